#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "io/mnist.h"

namespace {

namespace fs = std::filesystem;

std::string temp_dir(const std::string& tag) {
  static int counter = 0;
  fs::path p = fs::temp_directory_path() / fmt::format("catq_test_mnist_{}_{}_{}", getpid(), tag, counter++);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// Digit d gets d + 2 images; pixel 0 of every image of digit d is d / 10, pixel 1 its index within the
// file / 100, the rest a pattern. Returns the folder.
std::string synthetic_digits(const std::string& tag) {
  std::string dir = temp_dir(tag);
  for (int d = 0; d < 10; ++d) {
    std::string s = "{\"data\":[";
    for (int i = 0; i < d + 2; ++i)
      for (int p = 0; p < 784; ++p) {
        double v = p == 0 ? d / 10.0 : p == 1 ? i / 100.0 : ((p * 7 + i) % 5) / 4.0;
        if (i || p) s += ',';
        s += fmt::format("{}", v);
      }
    s += "]}";
    catq::write_file_atomic(fmt::format("{}/{}.json", dir, d), s);
  }
  return dir;
}

TEST(DataMnist, SyntheticFolderSplitAndLabels) {
  std::string dir = synthetic_digits("ok");
  catq::MnistOptions o;
  o.dir = dir;
  o.norm = catq::Normalize::none();
  catq::MnistData m = catq::load_mnist(o);
  // 2 + 3 + ... + 11 = 65 images; round(65 * 0.2) = 13 test.
  ASSERT_EQ(m.test.size(), 13);
  ASSERT_EQ(m.train.size(), 52);
  ASSERT_EQ(m.train.images.sizes(), (std::vector<int64_t>{52, 1, 28, 28}));
  EXPECT_EQ(m.train.name, "mnist:train");
  EXPECT_EQ(m.test.name, "mnist:test");
  // Every image carries its own label in pixel 0, and each (digit, index) pair appears exactly once overall.
  std::set<std::pair<int64_t, int64_t>> seen;
  for (const auto* ds : {&m.train, &m.test})
    for (int64_t k = 0; k < ds->size(); ++k) {
      int64_t label = ds->labels[k].item<int64_t>();
      EXPECT_NEAR(ds->images[k][0][0][0].item<float>() * 10, label, 1e-5);
      int64_t idx = std::lround(ds->images[k][0][0][1].item<float>() * 100);
      EXPECT_TRUE(seen.insert({label, idx}).second);
      EXPECT_FLOAT_EQ(ds->images[k][0][27][27].item<float>(), ((783 * 7 + idx) % 5) / 4.0f);
    }
  EXPECT_EQ(seen.size(), 65u);

  // The split is a function of the seed only.
  catq::MnistData again = catq::load_mnist(o);
  EXPECT_TRUE(again.test.labels.equal(m.test.labels));
  EXPECT_TRUE(again.train.images.equal(m.train.images));
  o.seed = 7;
  catq::MnistData other = catq::load_mnist(o);
  EXPECT_FALSE(other.train.images.equal(m.train.images));

  // Default normalisation.
  o.seed = catq::kMnistSplitSeed;
  o.norm = catq::Normalize::mnist();
  catq::MnistData n = catq::load_mnist(o);
  EXPECT_NEAR(n.train.images[4][0][3][3].item<float>(), (m.train.images[4][0][3][3].item<float>() - 0.1307) / 0.3081,
              1e-5);
}

TEST(DataMnist, SeededPermutationIsFixed) {
  // The permutation defines the documented split: pin it so that it never changes silently.
  std::vector<int64_t> p = catq::seeded_permutation(10, 42);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_EQ(p, catq::seeded_permutation(10, 42));
  EXPECT_NE(p, catq::seeded_permutation(10, 43));
}

TEST(DataMnist, ParserMatchesNlohmann) {
  // The fast path and the general JSON parser must agree number for number.
  // The first list stays on the fast path; each number of the second sends its file to nlohmann::json.
  std::vector<std::string> easy = {"0", "1", "0.5", "0.624", "0.99999999", "1e-3", "2.5E-1", "1.0e0",
                                   "0.000001", "0.123456789012345", "0.0", "1E+0"};
  std::vector<std::string> hard = {"0.1234567890123456789", "3e-30", "0.00000000000000000000000001"};
  for (const std::string& extra : {std::string(), hard[0], hard[1], hard[2]}) {
    std::string body;
    for (size_t k = 0; k < 784; ++k) {
      if (k) body += " ,\n ";
      body += k == 5 && !extra.empty() ? extra : easy[(k + k / 12) % easy.size()];
    }
    std::string text = " { \"data\" :\t[" + body + "] }\n";
    std::vector<float> fast = catq::parse_mnist_digits_json(text, "x.json");
    nlohmann::json j = nlohmann::json::parse(text);
    ASSERT_EQ(fast.size(), j["data"].size());
    ASSERT_EQ(fast.size(), 784u);
    for (size_t i = 0; i < fast.size(); ++i) EXPECT_EQ(fast[i], j["data"][i].get<float>()) << extra << " " << i;
    // Other key orders / extra keys go through the general parser.
    std::string other = "{\"label\": 3, \"data\": [" + body + "]}";
    EXPECT_EQ(catq::parse_mnist_digits_json(other, "y.json"), fast);
  }
}

void expect_error(const std::function<void()>& f, catq::ErrorKind kind, const std::vector<std::string>& parts) {
  try {
    f();
    FAIL() << "expected an error";
  } catch (const catq::Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(BadInputMnist, MissingFolderOrFile) {
  catq::MnistOptions o;
  o.dir = "/nonexistent/mnist/digits";
  expect_error([&] { catq::load_mnist(o); }, catq::ErrorKind::Io, {"/nonexistent/mnist/digits", "make demo"});
  std::string dir = synthetic_digits("missing");
  fs::remove(dir + "/3.json");
  o.dir = dir;
  expect_error([&] { catq::load_mnist(o); }, catq::ErrorKind::Io, {"3.json", "setup.sh"});
}

TEST(BadInputMnist, MalformedJson) {
  auto parse = [](const std::string& t) { return [t] { catq::parse_mnist_digits_json(t, "bad.json"); }; };
  std::string ok784;
  for (int i = 0; i < 784; ++i) ok784.append(i ? ",0.5" : "0.5");
  expect_error(parse("{\"data\":[" + ok784 + ""), catq::ErrorKind::Format, {"bad.json", "JSON"});
  expect_error(parse(""), catq::ErrorKind::Format, {"bad.json"});
  expect_error(parse("[1,2,3]"), catq::ErrorKind::Format, {"bad.json", "data"});
  expect_error(parse("{\"data\":[]}"), catq::ErrorKind::Format, {"bad.json", "784"});
  expect_error(parse("{\"data\":[" + ok784 + ",0.5]}"), catq::ErrorKind::Format, {"bad.json", "785", "784"});
  expect_error(parse("{\"data\":[" + ok784 + ",\"x\"]}"), catq::ErrorKind::Format, {"bad.json", "data[784]"});
  std::string bad = ok784;
  bad.replace(bad.size() - 3, 3, "1.5");
  expect_error(parse("{\"data\":[" + bad + "]}"), catq::ErrorKind::Format, {"bad.json", "data[783]", "1.5"});
  expect_error(parse("{\"data\":[" + ok784 + ",-1e400]}"), catq::ErrorKind::Format, {"bad.json"});
  expect_error(parse("{\"data\":[01," + ok784 + "]}"), catq::ErrorKind::Format, {"bad.json"});
}

TEST(BadInputMnist, BadFileInFolderAndBadFraction) {
  std::string dir = synthetic_digits("badfile");
  catq::write_file_atomic(dir + "/7.json", std::string("{\"data\": [0.1, 0.2"));
  catq::MnistOptions o;
  o.dir = dir;
  expect_error([&] { catq::load_mnist(o); }, catq::ErrorKind::Format, {"7.json"});
  o.dir = synthetic_digits("frac");
  o.test_fraction = 0;
  expect_error([&] { catq::load_mnist(o); }, catq::ErrorKind::Config, {"test_fraction"});
  o.test_fraction = 0.001;  // rounds to 0 test images out of 65
  expect_error([&] { catq::load_mnist(o); }, catq::ErrorKind::Data, {"65"});
}

TEST(DataMnistCache, RealPackageSplit) {
  std::string dir = catq::default_mnist_dir();
  if (!catq::file_exists(dir + "/9.json")) GTEST_SKIP() << dir << " not present (run scripts/setup.sh)";
  catq::MnistData m = catq::load_mnist();
  ASSERT_EQ(m.train.size(), 8000);
  ASSERT_EQ(m.test.size(), 2000);
  at::Tensor counts = at::bincount(at::cat({m.train.labels, m.test.labels}), {}, 10);
  const int64_t expect[10] = {1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978};
  for (int d = 0; d < 10; ++d) EXPECT_EQ(counts[d].item<int64_t>(), expect[d]) << d;
  // Normalised with mean 0.1307 / std 0.3081: raw pixels in [0, 1] map to [-0.4242, 2.8215].
  EXPECT_NEAR(m.train.images.min().item<float>(), -0.1307f / 0.3081f, 1e-4);
  EXPECT_LE(m.train.images.max().item<float>(), (1 - 0.1307f) / 0.3081f + 1e-4f);
  at::Tensor test_counts = at::bincount(m.test.labels, {}, 10);
  for (int d = 0; d < 10; ++d) EXPECT_GT(test_counts[d].item<int64_t>(), 120) << d;
}

}  // namespace
