// ONNX backend node test cases from Debian's libonnx-testdata, for every op catq supports.
// Each case: model.onnx + test_data_set_*/{input,output}_*.pb. A case runs if all of its nodes use
// supported ops; it passes if every output matches (float: |a-b| <= 1e-7 + 1e-3|b|, as the ONNX
// backend tests; integers and bools: exact). The graph is also constant-folded and re-run.
#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/stat.h>

#include <iostream>
#include <set>

#include "core/error.h"
#include "io/onnx_reader.h"
#include "ir/passes.h"
#include "sim/fold_constants.h"
#include "sim/executor.h"

namespace {

const char* kNodeDir = "/usr/share/libonnx-testdata/data/node";

// Cases of supported ops that are excluded on purpose, with the reason.
const std::map<std::string, std::string>& excluded() {
  static const std::map<std::string, std::string> e = {
      {"test_cast_FLOAT_to_STRING", "string tensors are not supported"},
      {"test_cast_STRING_to_FLOAT", "string tensors are not supported"},
      {"test_cast_BFLOAT16_to_FLOAT", "test data stores bfloat16 tensors as UINT16 bit patterns; torch has no uint16"},
      {"test_cast_FLOAT_to_BFLOAT16", "test data stores bfloat16 tensors as UINT16 bit patterns; torch has no uint16"},
      {"test_castlike_BFLOAT16_to_FLOAT_expanded", "test data stores bfloat16 as UINT16 bit patterns; torch has no uint16"},
      {"test_castlike_FLOAT_to_BFLOAT16_expanded", "test data stores bfloat16 as UINT16 bit patterns; torch has no uint16"},
      {"test_castlike_FLOAT_to_STRING_expanded", "string tensors are not supported"},
      {"test_castlike_STRING_to_FLOAT_expanded", "string tensors are not supported"},
      {"test_identity_opt", "optional-typed values are not supported"},
      {"test_identity_sequence", "sequence-typed values are not supported"},
  };
  return e;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> r;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") r.push_back(n);
    }
    closedir(d);
  }
  std::sort(r.begin(), r.end());
  return r;
}

std::string compare(const at::Tensor& got, const at::Tensor& want) {
  if (got.sizes() != want.sizes())
    return fmt::format("shape [{}] != expected [{}]", fmt::join(got.sizes(), ","), fmt::join(want.sizes(), ","));
  if (at::isFloatingType(want.scalar_type())) {
    at::Tensor g = got.to(at::kDouble), w = want.to(at::kDouble);
    at::Tensor nan_ok = at::isnan(g) == at::isnan(w);
    if (!nan_ok.all().item<bool>()) return "NaN pattern differs";
    at::Tensor gm = at::nan_to_num(g), wm = at::nan_to_num(w);
    at::Tensor bad = (gm - wm).abs() > (1e-7 + 1e-3 * wm.abs());
    bad = bad & ~(at::isinf(g) & (g == w));
    if (bad.any().item<bool>()) return fmt::format("max abs diff {}", (gm - wm).abs().max().item<double>());
    return "";
  }
  if (got.scalar_type() != want.scalar_type())
    return fmt::format("dtype {} != expected {}", c10::toString(got.scalar_type()), c10::toString(want.scalar_type()));
  return at::equal(got, want) ? "" : "values differ";
}

// Runs one case; returns "" on success or the reason it failed.
std::string run_case(const std::string& dir, bool fold) {
  catq::Graph g = catq::load_onnx(dir + "/model.onnx");
  if (fold) catq::fold_constants(g);
  catq::GraphExecutor ex(std::move(g));
  for (const auto& ds : list_dir(dir)) {
    if (ds.rfind("test_data_set_", 0) != 0) continue;
    std::vector<at::Tensor> inputs, outputs;
    for (size_t i = 0;; ++i) {
      std::string p = fmt::format("{}/{}/input_{}.pb", dir, ds, i);
      struct stat st;
      if (stat(p.c_str(), &st) != 0) break;
      inputs.push_back(catq::load_tensor_pb(p));
    }
    for (size_t i = 0;; ++i) {
      std::string p = fmt::format("{}/{}/output_{}.pb", dir, ds, i);
      struct stat st;
      if (stat(p.c_str(), &st) != 0) break;
      outputs.push_back(catq::load_tensor_pb(p));
    }
    // Graph inputs that are also initializers were dropped; feed only the real ones.
    inputs.resize(std::min(inputs.size(), ex.graph().inputs.size()));
    std::vector<at::Tensor> got;
    {
      at::NoGradGuard ng;
      got = ex.run(inputs);
    }
    if (got.size() < outputs.size()) return "fewer outputs than expected";
    for (size_t i = 0; i < outputs.size(); ++i) {
      std::string why = compare(got[i], outputs[i]);
      if (!why.empty()) return fmt::format("{} output {}: {}", ds, i, why);
    }
  }
  return "";
}

}  // namespace

TEST(OnnxConformance, SupportedOpsNodeCases) {
  struct stat st;
  if (stat(kNodeDir, &st) != 0) GTEST_SKIP() << kNodeDir << " missing: install the Debian package libonnx-testdata";
  int passed = 0, ran = 0, skipped_excluded = 0;
  std::map<std::string, std::pair<int, int>> per_op;  // op -> (passed, ran)
  std::vector<std::string> failures;
  for (const auto& c : list_dir(kNodeDir)) {
    std::string dir = std::string(kNodeDir) + "/" + c;
    catq::Graph g;
    try {
      catq::OnnxReadOptions o;
      o.check_ops = false;
      g = catq::load_onnx(dir + "/model.onnx", o);
    } catch (const catq::Error&) {
      continue;  // opset outside range or unreadable: not a case for us
    }
    bool supported = !g.nodes.empty();
    std::set<std::string> ops;
    for (const auto& n : g.nodes) {
      supported = supported && n.domain.empty() && catq::is_supported_op(n.op_type);
      ops.insert(n.op_type);
    }
    if (!supported) continue;
    if (excluded().count(c)) { ++skipped_excluded; continue; }
    ++ran;
    std::string why;
    try {
      why = run_case(dir, false);
      if (why.empty()) why = run_case(dir, true);
    } catch (const std::exception& e) {
      why = e.what();
    }
    for (const auto& op : ops) {
      per_op[op].second++;
      if (why.empty()) per_op[op].first++;
    }
    if (why.empty()) ++passed;
    else failures.push_back(c + ": " + why);
  }
  std::cout << fmt::format("ONNX conformance (libonnx-testdata node cases of supported ops): {}/{} passed, {} excluded\n",
                           passed, ran, skipped_excluded);
  for (const auto& [op, pr] : per_op) std::cout << fmt::format("  {:20} {}/{}\n", op, pr.first, pr.second);
  for (const auto& [c, why] : excluded()) std::cout << fmt::format("  excluded {}: {}\n", c, why);
  for (const auto& f : failures) ADD_FAILURE() << f;
  EXPECT_GT(ran, 100);
}
