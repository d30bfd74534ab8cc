#include "methods/llm/stream_quantize.h"

#include <chrono>
#include <optional>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/memory_usage.h"
#include "io/catq_file.h"
#include "llm/llama_tensors.h"
#include "quant/quantizer.h"

namespace catq {

at::ScalarType code_dtype(const QuantParams& p) {
  if (p.qmin >= 0 && p.qmax <= 255) return at::kByte;
  if (p.qmin >= -128 && p.qmax <= 127) return at::kChar;
  return at::kInt;
}

bool rows_independent(const QuantSpec& spec, const at::Tensor& w) {
  if (spec.scheme != Scheme::Uniform || w.dim() != 2) return false;
  const int axis = spec.resolved_axis(2);
  if (spec.granularity == Granularity::PerGroup) return axis == 1;
  return spec.granularity == Granularity::PerChannel && axis == 0 && w.size(1) <= 4096;
}

std::pair<QuantParams, at::Tensor> rtn_quantize_weight(const QuantSpec& spec, const at::Tensor& stored,
                                                       int64_t* peak_bytes) {
  constexpr int64_t kSlice = int64_t{1} << 23;
  const int64_t rows = stored.size(0), cols = stored.dim() > 1 ? stored.numel() / rows : 1;
  const int64_t per = std::max<int64_t>(1, kSlice / std::max<int64_t>(cols, 1));
  if (stored.numel() <= kSlice || !rows_independent(spec, stored)) {
    at::Tensor w32 = stored.to(at::kFloat).contiguous();  // read-only: a mapped fp32 weight comes back as the view
    *peak_bytes = std::max<int64_t>(*peak_bytes, w32.numel() * 4);
    QuantParams p = compute_params(spec, w32);
    at::Tensor codes = quantize(w32, p);
    return {p, codes.to(code_dtype(p))};
  }
  std::vector<at::Tensor> scales, zeros, codes;
  QuantParams whole;
  for (int64_t r = 0; r < rows; r += per) {
    at::Tensor w32 = stored.narrow(0, r, std::min(per, rows - r)).to(at::kFloat).contiguous();
    *peak_bytes = std::max<int64_t>(*peak_bytes, w32.numel() * 4);
    QuantParams p = compute_params(spec, w32);
    codes.push_back(quantize(w32, p).to(code_dtype(p)));
    scales.push_back(p.scale);
    zeros.push_back(p.zero_point);
    if (r == 0) whole = p;
  }
  whole.scale = at::cat(scales, 0);
  whole.zero_point = at::cat(zeros, 0);
  return {whole, at::cat(codes, 0)};
}

nlohmann::json quantize_llama_streamed(LlamaModel& m, SimQuant& sq, const at::Tensor& calib, const BlockwiseOptions& o,
                                       const LlmTransformOptions& transform, const Tokenizer* tok, const std::string& out,
                                       nlohmann::json metadata) {
  at::NoGradGuard ng;
  trace_memory("stream: loaded");
  const auto start = std::chrono::steady_clock::now();
  std::optional<LlmBlockTransformer> tr;
  if (transform.method != "none") {  // QuaRot: embeddings and head rotated here; AWQ searches under sq's quantizers
    m.bind(&sq);
    tr.emplace(m, transform, transform.method == "awq" ? simquant_weight_quantizer(sq, m.layer_infos()) : WeightQuantizer());
  }
  const LlamaConfig& c = m.cfg;                                // (untied by QuaRot)
  CatqLlmWriter w(out, c, sq.config(), metadata);
  w.add_tensor(kLlamaTokenEmbd.gguf, m.tok_embeddings);
  const bool calibrated = blockwise_needs_calibration(sq, o, &transform);
  if (!c.tied_head && !calibrated) release_mapped_pages(m.tok_embeddings);  // else read again (tied head, calibration)
  w.add_tensor(kLlamaOutputNorm.gguf, m.norm);
  trace_memory("stream: embedding written");

  uint64_t weight_bits = 0;
  BlockwiseHooks hooks;
  hooks.transform = tr ? &*tr : nullptr;
  hooks.release_blocks = true;
  hooks.block_done = [&](int64_t l) {  // the block's FP tensors, as transformed, and its online transforms
    const LlamaBlock& b = m.blocks[l];
    for (const LlamaBlockTensor& t : llama_block_tensors())
      if (t.linear < 0 && t.present(c)) w.add_tensor(t.catq_key(l), b.*t.member);
    w.add_online_transforms(l, b);
  };
  nlohmann::json rep = quantize_llama_blockwise(m, sq, calib, o, [&](const BlockwiseLayer& l) {
    const at::Tensor& stored = m.layer_weight(l.info->index);
    const bool tied_head = l.info->is_last && c.tied_head;
    if (l.weight) {
      w.add_quantized_layer(l.info->name, make_quantized_weight(l.codes, *l.weight), l.input);
      weight_bits += storage_bits(stored.sizes(), sq.layer(l.info->name).weight_spec);
    } else {
      w.add_fp_layer(l.info->name, tied_head ? at::Tensor() : stored, l.input);
      weight_bits += static_cast<uint64_t>(stored.numel()) * 32;
    }
  }, hooks);
  if (tok) w.set_tokenizer(*tok);
  // The report goes into the file's metadata: quantization.{streamed, gptq, seconds, weight_quantization}.
  nlohmann::json& q = metadata["quantization"];
  q["streamed"] = true;
  q["transform"] = transform.str();
  if (tr && !tr->report().empty()) q["transform_choices"] = tr->report();
  if (rep.contains("gptq")) q["gptq"] = rep["gptq"], rep.erase("gptq");
  q["weight_quantization"] = rep;
  q["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metadata["weight_bytes"] = weight_bits / 8;
  w.set_metadata(metadata);
  w.finish();
  trace_memory("stream: finished");
  return metadata;
}

}  // namespace catq
