// Reliability (docs/reliability.md): no partial output under faults — an unwritable output folder, a file-size limit
// (the disk "full" for this process: RLIMIT_FSIZE, as `ulimit -f` sets it), SIGINT / SIGTERM while `catq quantize`
// writes — and the regression tests of what fuzzing found that no reader-specific suite covers (JSON integers).
// Suites start with BadInput: CI runs them under ASan + UBSan (make asan).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/atomic_file.h"
#include "core/file_util.h"
#include "core/json_read.h"
#include "core/temp_files.h"
#include "io/catq_container.h"
#include "io/hf_tokenizer.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "llm/tokenizer.h"
#include "sim/quant_config.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

struct Child {
  pid_t pid = -1;
  std::string log;  // stdout + stderr of the child
  int status = 0;
  bool exited() const { return WIFEXITED(status); }
  int code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }
  bool signaled(int sig) const { return WIFSIGNALED(status) && WTERMSIG(status) == sig; }
  std::string output() const { return read_file_text(log); }
};

// Starts `catq -q ARGS...` with stdout + stderr to `log`; fsize_limit > 0 sets RLIMIT_FSIZE (bytes) in the child first.
Child spawn_catq(const std::vector<std::string>& args, const std::string& log, rlim_t fsize_limit = 0) {
  std::vector<std::string> argv_s = {CATQ_CLI_PATH, "-q"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  Child c;
  c.log = log;
  c.pid = ::fork();
  if (c.pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    if (fsize_limit > 0) {
      rlimit rl{fsize_limit, fsize_limit};
      ::setrlimit(RLIMIT_FSIZE, &rl);
    }
    ::signal(SIGXFSZ, SIG_DFL);  // catq must ignore it itself (core/temp_files.h)
    ::signal(SIGINT, SIG_DFL);
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return c;
}

void wait_child(Child& c) { ::waitpid(c.pid, &c.status, 0); }

// A small Llama checkpoint (llama2.c) with a tokenizer next to it, and a calibration text.
struct SmallLlm {
  TempDir d;
  std::string model, text, out_dir;
  explicit SmallLlm(int64_t dim = 64, int64_t layers = 2) {
    const Tokenizer tok = tiny_tokenizer();
    LlamaConfig c = tiny_config(tok.vocab_size());
    c.dim = dim;
    c.hidden_dim = dim * 3 / 2;
    c.n_layers = layers;
    model = d / "model.bin";
    write_llama2c(LlamaModel::random(c, 3), model);
    write_llama2c_tokenizer(tok, d / "tokenizer.bin");
    text = d / "calib.txt";
    std::ofstream f(text);
    for (int i = 0; i < 300; ++i) f << "the cat sat on the mat and then it ran. ";
    out_dir = d / "out";
    fs::create_directories(out_dir);
  }
};

}  // namespace

// ---- JSON integers (found by fuzz_catq_cnn: UBSan "1.84467e+20 is outside the range of representable values of type
// 'long'" in nlohmann's get<int64_t>() on a .catq header's shape) ----------------------------------------------------

TEST(BadInputJson, IntegersFromFilesAreCheckedNotCast) {
  using nlohmann::json;
  EXPECT_EQ(json_int<int>(json(4)), 4);
  EXPECT_EQ(json_int<int>(json(4.0)), 4);
  EXPECT_EQ(json_int<int64_t>(json(-5)), -5);
  EXPECT_EQ(json_int<uint64_t>(json(18446744073709551615ull)), 18446744073709551615ull);
  EXPECT_EQ(json_int<int64_t>(json(-9223372036854775807LL - 1)), INT64_MIN);
  for (const json& bad : {json(1.8446744073709552e20), json(1e300), json(-1e300), json(4.5), json("4"), json(nullptr),
                          json(true), json(9223372036854775808.0)})
    EXPECT_THROW(json_int<int64_t>(bad), json::type_error) << bad.dump();
  EXPECT_THROW(json_int<int>(json(int64_t{1} << 40)), json::type_error);
  EXPECT_THROW(json_int<uint64_t>(json(-1)), json::type_error);
  EXPECT_THROW(json_int<int32_t>(json(2147483648.0)), json::type_error);
  EXPECT_EQ(json_ints<int64_t>(json::parse("[1, 2.0, 3]")), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_THROW(json_ints<int64_t>(json::parse("[1, 4.5]")), json::type_error);
  EXPECT_THROW(json_ints<int64_t>(json(3)), json::type_error);
}

TEST(BadInputJson, CatqTensorEntryWithAHugeFloatDimensionIsAFormatError) {
  std::vector<uint8_t> blob(64, 0);
  CatqBlobReader r(blob.data(), blob.size(), "model.catq");
  for (const char* entry : {R"({"dtype": "F32", "shape": [1.8446744073709552e20], "offset": 0, "nbytes": 4})",
                            R"({"dtype": "F32", "shape": [1], "offset": 1e300, "nbytes": 4})",
                            R"({"dtype": "PACKED", "shape": [8], "offset": 0, "nbytes": 4, "bits": 4.5, "min": 0})",
                            R"({"dtype": "PACKED", "shape": [8], "offset": 0, "nbytes": 4, "bits": 4, "min": -1e19})"}) {
    try {
      r.get(nlohmann::json::parse(entry), "layers[0].weight");
      ADD_FAILURE() << "accepted " << entry;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Format) << e.what();
      EXPECT_NE(std::string(e.what()).find("model.catq: layers[0].weight"), std::string::npos) << e.what();
    }
  }
}

// A tokenizer.json whose pre_tokenizer is a Sequence nested 200,000 deep overflowed the stack (the Sequence walk
// recurses; ASan: stack-overflow in fuzz_hf_tokenizer on a generated file). Every JSON reader now refuses nesting
// deeper than 64 levels before parsing (core/json_read.h).
TEST(BadInputJson, DeeplyNestedJsonIsRefusedBeforeParsing) {
  EXPECT_EQ(json_nesting_depth(R"({"a": "[[[[{{{{", "b": [1, [2, {"c": 3}]]})"), 4);
  EXPECT_EQ(json_nesting_depth(R"("\"[[[")"), 0);
  const int n = 200000;
  std::string seq;
  for (int i = 0; i < n; ++i) seq += R"({"type": "Sequence", "pretokenizers": [)";
  for (int i = 0; i < n; ++i) seq += "]}";
  const std::string tok = R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": )" + seq + "}";
  try {
    parse_hf_tokenizer(tok, "", "deep/tokenizer.json");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Format) << e.what();
    EXPECT_NE(std::string(e.what()).find("deep/tokenizer.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("nested 400001 levels deep"), std::string::npos) << e.what();
  }
  const std::string arr = "{\"defaults\": " + std::string(n, '[') + std::string(n, ']') + "}";
  try {
    QuantConfig::from_json(arr, "deep.json");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config) << e.what();
    EXPECT_NE(std::string(e.what()).find("deep.json"), std::string::npos) << e.what();
  }
  // 64 levels are still read.
  EXPECT_NO_THROW(parse_json(std::string(63, '[') + std::string(63, ']')));
}

// Found by fuzz_quant_config: a suffix's bit count of many digits ("-emb5555555555...") made std::stoi throw
// std::out_of_range (the command's "internal error") instead of a Config error.
TEST(BadInputConfig, CompactStringWithAHugeBitCountIsAConfigError) {
  for (const char* s : {"w4a8-emb5555555555555555555555555555555555555", "w4a8-kv99999999999", "w4a8-fl123456789012",
                        "w4a8-emb0009"}) {
    try {
      QuantConfig::from_string(s);
      ADD_FAILURE() << "accepted " << s;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Config) << e.what();
      EXPECT_NE(std::string(e.what()).find("not supported"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(QuantConfig::from_string("w4a8-emb4").embedding.bits, 4);
  EXPECT_EQ(QuantConfig::from_string("w4a8-kv008").kv_cache.bits, 8);
}

// ---- Temporary files and fatal signals -----------------------------------------------------------------------

TEST(BadInputOutput, AtomicFileIsRegisteredOnlyWhileUnfinished) {
  TempDir d;
  const int before = registered_temp_files();
  {
    AtomicFile f(d / "a.bin");
    f.write("abc");
    EXPECT_EQ(registered_temp_files(), before + 1);
    f.commit();
    EXPECT_EQ(registered_temp_files(), before);
  }
  {
    AtomicFile f(d / "b.bin");
    f.write("abc");
    EXPECT_EQ(registered_temp_files(), before + 1);
  }  // destroyed uncommitted: removed, unregistered
  EXPECT_EQ(registered_temp_files(), before);
  EXPECT_EQ(list_dir(d.path), std::vector<std::string>{"a.bin"});
}

// A process killed by SIGINT / SIGTERM while an output file is half written leaves nothing behind, and dies by the
// same signal (a shell sees 130 / 143).
TEST(BadInputOutput, FatalSignalRemovesTheUnfinishedFile) {
  for (int sig : {SIGINT, SIGTERM}) {
    TempDir d;
    std::ofstream(d / "keep.catq") << "old contents";
    const pid_t pid = ::fork();
    if (pid == 0) {
      install_fatal_signal_cleanup();
      AtomicFile f(d / "keep.catq");
      f.write(std::string(100000, 'x'));
      AtomicFile g(d / "other.bin");
      g.write("y");
      ::raise(sig);
      ::_exit(0);  // not reached
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << "status " << status;
    EXPECT_EQ(list_dir(d.path), std::vector<std::string>{"keep.catq"});
    EXPECT_EQ(read_file_text(d / "keep.catq"), "old contents");
  }
}

// ---- `catq quantize` under faults ----------------------------------------------------------------------------

TEST(BadInputOutput, UnwritableOutputFolderIsAnIoErrorAndWritesNothing) {
  SmallLlm m;
  std::ofstream(m.out_dir + "/not_a_dir") << "x";
  std::vector<std::string> outs = {m.out_dir + "/missing/sub/q.catq", m.out_dir + "/not_a_dir/q.catq"};
  const bool root = ::geteuid() == 0;
  if (!root) {
    fs::create_directories(m.out_dir + "/ro");
    ::chmod((m.out_dir + "/ro").c_str(), 0555);
    outs.push_back(m.out_dir + "/ro/q.catq");
  }
  for (const std::string& out : outs) {
    SCOPED_TRACE(out);
    Child c = spawn_catq({"quantize", m.model, "--config", "w4a16g32", "--stream", "always", "-o", out}, m.d / "log.txt");
    wait_child(c);
    const std::string log = c.output();
    EXPECT_EQ(c.code(), 3) << log;
    EXPECT_NE(log.find(out), std::string::npos) << log;
    EXPECT_NE(log.find("cannot create"), std::string::npos) << log;
  }
  if (!root) ::chmod((m.out_dir + "/ro").c_str(), 0755);
  std::vector<std::string> expect = {"not_a_dir"};
  if (!root) expect.push_back("ro");
  EXPECT_EQ(list_dir(m.out_dir), expect);
  if (!root) EXPECT_TRUE(list_dir(m.out_dir + "/ro").empty());
}

// The disk fills up (here: the process may not write files over 16 KiB) while the quantized model is written: exit
// code 3 naming the output and the reason, no temporary file left, an existing output untouched — for both .catq
// writers (LLM: streamed blob + final copy; CNN / in-memory: one atomic write) and for GGUF export.
TEST(BadInputOutput, FileSizeLimitIsAnIoErrorAndLeavesTheOutputUntouched) {
  SmallLlm m;
  const std::string out = m.out_dir + "/q.catq";
  for (const char* stream : {"always", "never"}) {
    SCOPED_TRACE(stream);
    std::ofstream(out) << "old contents";
    Child c = spawn_catq({"quantize", m.model, "--config", "w4a16g32", "--stream", stream, "--text", m.text, "-o", out},
                         m.d / "log.txt", 16 << 10);
    wait_child(c);
    const std::string log = c.output();
    EXPECT_EQ(c.code(), 3) << log;
    EXPECT_NE(log.find("write failed"), std::string::npos) << log;
    EXPECT_NE(log.find("File too large"), std::string::npos) << log;
    EXPECT_EQ(list_dir(m.out_dir), std::vector<std::string>{"q.catq"});
    EXPECT_EQ(read_file_text(out), "old contents");
  }
  Child c = spawn_catq({"export", m.model, "--type", "f32", "-o", m.out_dir + "/m.gguf"}, m.d / "log.txt", 16 << 10);
  wait_child(c);
  EXPECT_EQ(c.code(), 3) << c.output();
  EXPECT_EQ(list_dir(m.out_dir), std::vector<std::string>{"q.catq"});
  // Without the limit the same command succeeds (the failure above is the limit's).
  c = spawn_catq({"quantize", m.model, "--config", "w4a16g32", "--stream", "always", "-o", out}, m.d / "log.txt");
  wait_child(c);
  EXPECT_EQ(c.code(), 0) << c.output();
  EXPECT_NE(read_file_text(out), "old contents");
}

// Ctrl-C while `catq quantize` streams a model into its output: the process ends by SIGINT with a message, and neither
// the output nor a temporary file remains. The signal is sent as soon as the writer's temporary blob appears.
TEST(BadInputOutput, SigintDuringQuantizeLeavesNoPartialFile) {
  SmallLlm m(/*dim=*/256, /*layers=*/6);
  const std::string out = m.out_dir + "/q.catq";
  Child c = spawn_catq({"quantize", m.model, "--config", "w4a16g32", "--weights", "gptq", "--text", m.text,
                        "--stream", "always", "-o", out},
                       m.d / "log.txt");
  bool seen = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!seen && std::chrono::steady_clock::now() < deadline) {
    for (const std::string& f : list_dir(m.out_dir)) seen = seen || f.find(".tmp") != std::string::npos;
    if (!seen) {
      int st = 0;
      if (::waitpid(c.pid, &st, WNOHANG) == c.pid) {
        c.status = st;
        FAIL() << "catq quantize ended before its temporary file was seen:\n" << c.output();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ASSERT_TRUE(seen) << "no temporary file within 120 s";
  ::kill(c.pid, SIGINT);
  wait_child(c);
  const std::string log = c.output();
  EXPECT_TRUE(c.signaled(SIGINT)) << "status " << c.status << "\n" << log;
  EXPECT_NE(log.find("catq: interrupted"), std::string::npos) << log;
  EXPECT_TRUE(list_dir(m.out_dir).empty()) << fmt::format("{}", fmt::join(list_dir(m.out_dir), " "));
}
