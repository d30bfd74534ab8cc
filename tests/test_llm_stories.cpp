// Acceptance on the real stories260K model: byte-exact greedy text, reference perplexity, protocol options.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "eval/perplexity.h"
#include "llm/generate.h"
#include "io/llm_loader.h"
#include "io/gguf.h"
#include "methods/llm/analyze_job.h"
#include "methods/llm/eval_job.h"
#include "runtime/lean_llama.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;

namespace {

// reference_greedy200.txt is a debug log, not bare text: line 2 is "tokens [1, 403, ...]" (BOS + the
// 200 greedy tokens) and line 4 is the decoded text as a Python bytes literal b'...'. Both are parsed.
struct GreedyReference {
  std::vector<int32_t> tokens;
  std::string text;
};

std::string unescape_py_bytes(const std::string& lit) {
  EXPECT_GE(lit.size(), 3u);
  EXPECT_EQ(lit[0], 'b');
  const char q = lit[1];
  EXPECT_EQ(lit.back(), q);
  std::string out;
  for (size_t i = 2; i + 1 < lit.size(); ++i) {
    char c = lit[i];
    if (c != '\\') {
      out += c;
      continue;
    }
    char e = lit[++i];
    switch (e) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'x': out += static_cast<char>(std::stoi(lit.substr(i + 1, 2), nullptr, 16)); i += 2; break;
      default: ADD_FAILURE() << "unhandled escape \\" << e;
    }
  }
  return out;
}

GreedyReference read_greedy_reference(const std::string& path) {
  GreedyReference r;
  std::string all = read_file_text(path);
  size_t pos = 0;
  while (pos < all.size()) {
    size_t nl = all.find('\n', pos);
    std::string line = all.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? all.size() : nl + 1;
    if (line.rfind("tokens [", 0) == 0) {
      std::string body = line.substr(8, line.size() - 9);
      size_t p = 0;
      while (p < body.size()) {
        size_t q = body.find(',', p);
        r.tokens.push_back(std::stoi(body.substr(p, q - p)));
        p = q == std::string::npos ? body.size() : q + 1;
      }
    } else if (line.rfind("b'", 0) == 0 || line.rfind("b\"", 0) == 0) {
      r.text = unescape_py_bytes(line);
    }
  }
  return r;
}

}  // namespace

TEST(LlmStories, Greedy200IsByteExact) {
  const std::string ref_path = asset("llama2c/reference_greedy200.txt");
  if (!have_stories() || !file_exists(ref_path)) GTEST_SKIP() << "needs ../shared/assets/llama2c (absent)";
  GreedyReference ref = read_greedy_reference(ref_path);
  ASSERT_EQ(ref.tokens.size(), 201u);
  ASSERT_EQ(ref.tokens[0], 1);
  ASSERT_FALSE(ref.text.empty());

  LoadedLlama m = load_llama(stories_bin(), stories_tok());
  GenerateOptions opt;
  opt.steps = 200;
  opt.sampler.temperature = 0;
  GenerateResult g = generate(m.model, *m.tokenizer, "", opt);
  EXPECT_EQ(g.prompt_tokens, std::vector<int32_t>{1});
  std::vector<int32_t> expect(ref.tokens.begin() + 1, ref.tokens.end());
  EXPECT_EQ(g.tokens, expect);
  // The text: BOS-stripped leading space, byte tokens as raw bytes, no trailing newline.
  EXPECT_EQ(g.text, ref.text);
  EXPECT_EQ(m.tokenizer->decode(ref.tokens), ref.text);
}

// The same greedy 200 tokens from the model exported to an F32 GGUF and decoded token by token on the lean runtime
// (catq's own kernels and thread pool, no libtorch): the generation loop is the one `catq generate --runtime lean`
// runs.
TEST(LlmStories, Greedy200OnTheLeanRuntimeIsTokenExact) {
  const std::string ref_path = asset("llama2c/reference_greedy200.txt");
  if (!have_stories() || !file_exists(ref_path)) GTEST_SKIP() << "needs ../shared/assets/llama2c (absent)";
  GreedyReference ref = read_greedy_reference(ref_path);
  LoadedLlama m = load_llama(stories_bin(), stories_tok());
  TempDir d;
  write_gguf_llama(m.model, &*m.tokenizer, d / "s.gguf");
  LeanLlamaOptions o;
  o.threads = 2;
  o.max_context = 256;
  LeanLlama lean(d / "s.gguf", o);
  std::vector<float> logits;
  const NextLogitsFn step = [&](const int32_t* tokens, int64_t n) {
    lean.eval(tokens, n, &logits);
    return at::from_blob(logits.data(), {static_cast<int64_t>(logits.size())}, at::kFloat);
  };
  GenerateOptions opt;
  opt.steps = 200;
  opt.sampler.temperature = 0;
  const GenerateResult g = generate_with(step, 256, m.model.cfg.vocab_size, *m.tokenizer, "", opt);
  EXPECT_EQ(g.tokens, std::vector<int32_t>(ref.tokens.begin() + 1, ref.tokens.end()));
  EXPECT_EQ(g.text, ref.text);
}

TEST(LlmStories, PerplexityMatchesReference) {
  const std::string text_path = asset("text/tinystories_valid_head.txt");
  if (!have_stories() || !file_exists(text_path)) GTEST_SKIP() << "needs ../shared/assets (absent)";
  LoadedLlama m = load_llama(stories_bin(), "");  // finds tok512.bin next to the model
  ASSERT_TRUE(m.tokenizer.has_value());
  std::string text = read_file_text(text_path);
  PerplexityResult r = perplexity(m.model, *m.tokenizer, text);  // default options = reference protocol
  EXPECT_EQ(r.n_chars, 12000);
  EXPECT_EQ(r.n_text_tokens, 5774);
  EXPECT_EQ(r.n_windows, 22);
  EXPECT_EQ(r.n_scored, 5632);
  EXPECT_NEAR(r.ppl, 4.349, 0.005);
  EXPECT_NEAR(r.mean_nll, 1.4699, 0.0012);
  std::printf("stories260K reference protocol: PPL %.4f, mean NLL %.5f, %lld tokens, %lld windows\n", r.ppl,
              r.mean_nll, static_cast<long long>(r.n_scored), static_cast<long long>(r.n_windows));
}

TEST(LlmStories, DistributionComparison) {
  const std::string text_path = asset("text/tinystories_valid_head.txt");
  if (!have_stories() || !file_exists(text_path)) GTEST_SKIP() << "needs ../shared/assets (absent)";
  LoadedLlama m = load_llama(stories_bin(), stories_tok());
  std::string text = read_file_text(text_path);
  PerplexityOptions o;
  o.max_windows = 4;
  // The model against itself: KL 0, full agreement.
  auto same = compare_next_token(m.model, nullptr, nullptr, *m.tokenizer, text, o);
  EXPECT_NEAR(same.mean_kl, 0.0, 1e-9);
  EXPECT_DOUBLE_EQ(same.top1_agreement, 1.0);
  EXPECT_EQ(same.n_scored, 4 * 256);
  // Against a crude 4-bit round-to-nearest of every weight.
  struct Rtn4 : QuantContext {
    at::Tensor weight(const LayerInfo&, const at::Tensor& w) override {
      at::Tensor s = w.abs().amax(1, true).clamp_min(1e-8) / 7;
      return (w / s).round().clamp(-8, 7) * s;
    }
    at::Tensor input(const LayerInfo&, const at::Tensor& x) override { return x; }
  } q;
  auto cmp = compare_next_token(m.model, nullptr, &q, *m.tokenizer, text, o);
  EXPECT_GT(cmp.mean_kl, 1e-4);
  EXPECT_LT(cmp.top1_agreement, 1.0);
  EXPECT_GT(cmp.top1_agreement, 0.2);
  EXPECT_GT(cmp.test.ppl, cmp.ref.ppl);
}

TEST(LlmPerplexity, WindowingProtocol) {
  std::vector<int32_t> toks(1000);
  for (int i = 0; i < 1000; ++i) toks[i] = 3 + i % 50;
  PerplexityOptions o;
  o.window = 100;
  EvalWindows w = make_eval_windows(toks, o, 1);  // BOS, non-overlapping: 10 windows, all scored
  EXPECT_EQ(w.n_windows(), 10);
  EXPECT_EQ(w.n_scored(), 1000);
  EXPECT_EQ(w.inputs[0][0].item<int64_t>(), 1);
  EXPECT_EQ(w.inputs[1][1].item<int64_t>(), toks[100]);
  EXPECT_EQ(w.targets[1][0].item<int64_t>(), toks[100]);
  o.stride = 25;  // overlapping: windows at 0, 25, ..., 900; first scores 100, the others 25 each
  w = make_eval_windows(toks, o, 1);
  EXPECT_EQ(w.n_windows(), 37);
  EXPECT_EQ(w.n_scored(), 100 + 36 * 25);
  EXPECT_FALSE(w.score[1][74].item<bool>());
  EXPECT_TRUE(w.score[1][75].item<bool>());
  o.stride = 0;
  o.prepend_bos = false;  // 100 tokens predict the next 100: needs 101 tokens per window
  w = make_eval_windows(toks, o, 1);
  EXPECT_EQ(w.n_windows(), 9);
  EXPECT_EQ(w.inputs[0][0].item<int64_t>(), toks[0]);
  EXPECT_EQ(w.targets[0][0].item<int64_t>(), toks[1]);
  o.max_windows = 3;
  EXPECT_EQ(make_eval_windows(toks, o, 1).n_windows(), 3);
  EXPECT_EQ(truncate_utf8("a\xC3\xA9" "bc", 2), "a\xC3\xA9");
  o.stride = 200;
  expect_error([&] { make_eval_windows(toks, o, 1); }, ErrorKind::Usage, "stride");
  o.stride = 0;
  o.window = 2000;
  expect_error([&] { make_eval_windows(toks, o, 1); }, ErrorKind::Data, "window");
}

TEST(LlmGenerate, SamplingIsSeededAndStopsAtContext) {
  Tokenizer tok = tiny_tokenizer();
  LlamaModel m = LlamaModel::random(tiny_config(tok.vocab_size()), 11);
  m.tok_embeddings = m.tok_embeddings * 0.05;  // flatter next-token distributions than N(0, 1) embeddings
  m.output = m.tok_embeddings;
  GenerateOptions o;
  o.steps = 20;
  o.stop_at_eos = false;
  o.sampler = {1.0, 0.95, 123};
  auto a = generate(m, tok, "the cat", o), b = generate(m, tok, "the cat", o);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.tokens.size(), 20u);
  o.sampler.seed = 124;
  auto c = generate(m, tok, "the cat", o);
  EXPECT_NE(a.tokens, c.tokens);
  o.steps = 1000;  // clipped to the 64-token context
  auto d = generate(m, tok, "", o);
  EXPECT_EQ(d.stop_reason, "context");
  EXPECT_EQ(d.tokens.size() + 1, 64u);
}

TEST(LlmGenerate, SamplerDistributionAndTopP) {
  // p = (0.1, 0.2, 0.3, 0.4): sampled frequencies follow it; top-p 0.5 keeps only {3, 2}.
  at::Tensor logits = at::log(at::tensor(std::vector<float>{0.1f, 0.2f, 0.3f, 0.4f}));
  Sampler s({1.0, 1.0, 7});
  std::vector<int> count(4, 0);
  for (int i = 0; i < 20000; ++i) count[s.sample(logits)]++;
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(count[k] / 20000.0, 0.1 * (k + 1), 0.015) << k;
  Sampler t({1.0, 0.5, 7});
  std::vector<int> c2(4, 0);
  for (int i = 0; i < 20000; ++i) c2[t.sample(logits)]++;
  EXPECT_EQ(c2[0] + c2[1], 0);
  EXPECT_NEAR(c2[3] / 20000.0, 0.4 / 0.7, 0.015);
  Sampler g({0.0, 0.9, 7});
  EXPECT_EQ(g.sample(at::tensor(std::vector<float>{1, 3, 3, 2})), 1);  // greedy: first maximum
}

// The SQNR decomposition predicts stories260K's measured per-layer RTN SQNR (mean |predicted - measured| over the
// linear layers) within 0.5 dB, at equal and at different weight / activation bits (measured 2026-12-07: W4A4 0.27,
// W4A8 0.25, W8A4 0.29 dB). Guards docs/results/llm_ptq.md's SQNR claims and the mixed-bit formula.
TEST(LlmStories, SqnrDecompositionPredictsMeasuredSqnr) {
  const std::string text_path = asset("text/tinystories_valid_head.txt");
  if (!have_stories() || !file_exists(text_path)) GTEST_SKIP() << "needs ../shared/assets (absent)";
  for (auto [wb, ab] : {std::pair{4, 4}, std::pair{4, 8}, std::pair{8, 4}}) {
    LlmAnalyzeJob job;
    job.model = stories_bin();
    job.text = text_path;
    job.weight_bits = wb, job.act_bits = ab;
    const LlmAnalyzeResult r = run_llm_analyze_job(job);
    EXPECT_LT(r.before_summary.abs_err, 0.5) << "W" << wb << "A" << ab;
    EXPECT_EQ(r.report.at("weight_bits"), wb);
    EXPECT_EQ(r.report.at("act_bits"), ab);
  }
}

// Guards docs/results/llm_ptq.md's headline ordering at W4A4 (stories260K, RTN weights, reference protocol,
// calibration on the 24,000 characters after the scored text, as bench/llm_ptq.sh): block CAT (k = 4) < QuaRot < no
// transform. Measured 2026-12-02: 5.436 < 5.753 < 6.899 (FP32 4.349); run-to-run differences at W4A4 are ~0.3 %
// here, so the margins below (0.15 and 0.6 PPL) and the caps (+2 %) only fail on a real regression.
TEST(LlmStories, W4A4BlockCatBeatsQuarotBeatsNoTransform) {
  const std::string text_path = asset("text/tinystories_valid_head.txt");
  if (!have_stories() || !file_exists(text_path)) GTEST_SKIP() << "needs ../shared/assets (absent)";
  auto ppl = [&](const std::string& transform) {
    LlmEvalJob job;
    job.model = stories_bin();
    job.text = text_path;
    job.quant = std::string(CATQ_SOURCE_DIR) + "/bench/configs/llm_w4a4.json";
    job.transform = transform;
    job.calib_chars = 24000;
    const nlohmann::json r = run_llm_eval_job(job);
    const double p = r.at("quantized").at("ppl").get<double>();
    std::printf("[ ppl ] stories260K W4A4 RTN %s: %.4f (FP32 %.4f)\n", transform.c_str(), p,
                r.at("fp32").at("ppl").get<double>());
    return p;
  };
  const double none = ppl("none"), quarot = ppl("quarot"), blockcat = ppl("blockcat:k=4");
  EXPECT_LT(blockcat, quarot - 0.15);
  EXPECT_LT(quarot, none - 0.6);
  EXPECT_LT(blockcat, 5.436 * 1.02);
  EXPECT_LT(quarot, 5.753 * 1.02);
}
