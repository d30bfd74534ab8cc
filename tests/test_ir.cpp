// IR and ONNX import: folding passes on synthetic graphs, unsupported ops, malformed files.
#include <gtest/gtest.h>

#include <onnx/onnx_pb.h>

#include <cstdio>

#include "core/file_util.h"
#include "io/onnx_reader.h"
#include "ir/passes.h"
#include "sim/fold_constants.h"
#include "sim/executor.h"

namespace {

// Small builder for ONNX graphs in tests.
struct OnnxBuilder {
  onnx::ModelProto m;
  onnx::GraphProto* g;
  explicit OnnxBuilder(int opset = 13) {
    m.set_ir_version(8);
    auto* os = m.add_opset_import();
    os->set_domain("");
    os->set_version(opset);
    g = m.mutable_graph();
    g->set_name("test");
  }
  void input(const std::string& name, std::vector<int64_t> shape) {
    auto* v = g->add_input();
    v->set_name(name);
    auto* tt = v->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    for (int64_t d : shape) {
      auto* dim = tt->mutable_shape()->add_dim();
      if (d < 0) dim->set_dim_param("N"); else dim->set_dim_value(d);
    }
  }
  void output(const std::string& name) { g->add_output()->set_name(name); }
  void init(const std::string& name, const at::Tensor& t) {
    auto* p = g->add_initializer();
    p->set_name(name);
    at::Tensor c = t.contiguous();
    p->set_data_type(catq::torch_dtype_to_onnx(c.scalar_type()));
    for (int64_t d : c.sizes()) p->add_dims(d);
    p->set_raw_data(std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size()));
  }
  onnx::NodeProto* node(const std::string& op, std::vector<std::string> in, std::vector<std::string> out,
                        const std::string& name = "") {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (auto& s : in) n->add_input(s);
    for (auto& s : out) n->add_output(s);
    return n;
  }
  static void attr_i(onnx::NodeProto* n, const std::string& k, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr_ints(onnx::NodeProto* n, const std::string& k, std::vector<int64_t> v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INTS);
    for (auto x : v) a->add_ints(x);
  }
  std::string bytes() const { return m.SerializeAsString(); }
  catq::Graph graph() const {
    std::string b = bytes();
    return catq::parse_onnx(b.data(), b.size(), "test.onnx", ".");
  }
};

// conv -> BN -> relu -> (Shape -> Gather(1) -> Unsqueeze, const -1) -> Concat -> Reshape([N? no: [-1? ]])
OnnxBuilder conv_bn_reshape_model() {
  OnnxBuilder b;
  b.input("x", {-1, 3, 8, 8});
  b.init("w", at::randn({4, 3, 3, 3}));
  b.init("gamma", at::rand({4}) + 0.5);
  b.init("beta", at::randn({4}));
  b.init("mean", at::randn({4}) * 0.1);
  b.init("var", at::rand({4}) + 0.5);
  b.init("idx1", at::scalar_tensor(1, at::kLong));
  b.init("minus1", at::tensor({int64_t{-1}}));
  b.init("zero_axes", at::tensor({int64_t{0}}));
  auto* c = b.node("Conv", {"x", "w"}, {"c"}, "conv");
  OnnxBuilder::attr_ints(c, "pads", {1, 1, 1, 1});
  b.node("BatchNormalization", {"c", "gamma", "beta", "mean", "var"}, {"bn"}, "bn");
  b.node("Relu", {"bn"}, {"r"}, "relu");
  b.node("Shape", {"r"}, {"shape"}, "shape");
  b.node("Gather", {"shape", "idx1"}, {"ch"}, "gather");  // channels: static (4)
  b.node("Unsqueeze", {"ch", "zero_axes"}, {"ch1"}, "unsq");
  b.node("Concat", {"minus1", "ch1"}, {"newshape"}, "concat");
  OnnxBuilder::attr_i(b.g->mutable_node(b.g->node_size() - 1), "axis", 0);
  b.node("GlobalAveragePool", {"r"}, {"p"}, "gap");
  b.node("Reshape", {"p", "newshape"}, {"y"}, "reshape");
  b.node("Relu", {"x"}, {"dead"}, "dead_relu");  // contributes nothing
  b.output("y");
  return b;
}

}  // namespace

TEST(IrPasses, ShapeSubgraphFoldsAndOutputsUnchanged) {
  torch::manual_seed(0);
  OnnxBuilder b = conv_bn_reshape_model();
  catq::Graph g = b.graph();
  catq::GraphExecutor ref(g);
  at::Tensor x = at::randn({5, 3, 8, 8});
  at::Tensor y0 = ref.forward(x);
  ASSERT_EQ(y0.sizes(), (std::vector<int64_t>{5, 4}));

  catq::FoldStats s = catq::fold_constants(g);
  EXPECT_EQ(s.shape_nodes, 3);  // Gather, Unsqueeze, Concat (Shape itself holds the batch size)
  EXPECT_EQ(s.dead_nodes, 2);  // the now unused Shape, and dead_relu
  for (const auto& n : g.nodes) EXPECT_NE(n.op_type, "Shape");
  ASSERT_TRUE(g.is_constant("newshape"));
  EXPECT_TRUE(at::equal(g.initializers.at("newshape"), at::tensor({int64_t{-1}, int64_t{4}})));
  catq::GraphExecutor folded(g);
  EXPECT_TRUE(at::allclose(folded.forward(x), y0, 1e-5, 1e-6));
  // A batch size the probes never saw still works (the batch dimension was not baked in).
  at::Tensor x7 = at::randn({7, 3, 8, 8});
  EXPECT_TRUE(at::allclose(folded.forward(x7), ref.forward(x7), 1e-5, 1e-6));

  int bn = catq::fold_batchnorm(g);
  EXPECT_EQ(bn, 1);
  for (const auto& n : g.nodes) EXPECT_NE(n.op_type, "BatchNormalization");
  catq::GraphExecutor nobn(g);
  EXPECT_TRUE(at::allclose(nobn.forward(x), y0, 1e-4, 1e-5));
  ASSERT_EQ(nobn.layers().size(), 1u);
  EXPECT_EQ(nobn.layers()[0].name, "conv");
}

TEST(IrPasses, BatchDependentShapeIsNotFolded) {
  OnnxBuilder b;
  b.input("x", {-1, 6});
  b.init("idx0", at::scalar_tensor(0, at::kLong));
  b.node("Shape", {"x"}, {"s"});
  b.node("Gather", {"s", "idx0"}, {"n"});
  b.node("Cast", {"n"}, {"nf"});
  OnnxBuilder::attr_i(b.g->mutable_node(2), "to", onnx::TensorProto::FLOAT);
  b.node("Div", {"x", "nf"}, {"y"});
  b.output("y");
  catq::Graph g = b.graph();
  catq::fold_constants(g);
  bool has_shape = false;
  for (const auto& n : g.nodes) has_shape = has_shape || n.op_type == "Shape";
  EXPECT_TRUE(has_shape);
  catq::GraphExecutor ex(g);
  at::Tensor x = at::ones({4, 6});
  EXPECT_TRUE(at::allclose(ex.forward(x), x / 4));
}

TEST(IrPasses, QuantContextSeesEveryLayer) {
  OnnxBuilder b = conv_bn_reshape_model();
  catq::Graph g = b.graph();
  catq::GraphExecutor ex(g);
  struct Counting : catq::QuantContext {
    int w = 0, in = 0;
    at::Tensor weight(const catq::LayerInfo&, const at::Tensor& t) override { ++w; return t; }
    at::Tensor input(const catq::LayerInfo&, const at::Tensor& t) override { ++in; return t; }
  } ctx;
  ex.forward(at::randn({2, 3, 8, 8}), &ctx);
  EXPECT_EQ(ctx.w, 1);
  EXPECT_EQ(ctx.in, 1);
}

TEST(BadInputOnnx, UnsupportedOpNamesOpAndNode) {
  OnnxBuilder b;
  b.input("x", {1, 4});
  b.node("Erf", {"x"}, {"y"}, "my_erf_node");
  b.output("y");
  try {
    b.graph();
    FAIL() << "expected an error";
  } catch (const catq::Error& e) {
    EXPECT_EQ(e.kind(), catq::ErrorKind::Unsupported);
    std::string m = e.what();
    EXPECT_NE(m.find("Erf"), std::string::npos) << m;
    EXPECT_NE(m.find("my_erf_node"), std::string::npos) << m;
  }
}

TEST(BadInputOnnx, GarbageTruncatedAndEmpty) {
  std::string good = conv_bn_reshape_model().bytes();
  int errors = 0;
  for (size_t cut : {size_t{0}, size_t{1}, size_t{7}, good.size() / 3, good.size() / 2, good.size() - 3}) {
    try {
      catq::parse_onnx(good.data(), cut, "cut.onnx", ".");
    } catch (const catq::Error& e) {
      ++errors;
      EXPECT_NE(std::string(e.what()).find("cut.onnx"), std::string::npos);
    }
  }
  EXPECT_EQ(errors, 6);
  std::string junk(1000, '\xff');
  EXPECT_THROW(catq::parse_onnx(junk.data(), junk.size(), "junk.onnx", "."), catq::Error);
  EXPECT_THROW(catq::load_onnx("/nonexistent/model.onnx"), catq::Error);
}

TEST(BadInputOnnx, HugeDeclaredTensorAndShapeMismatch) {
  OnnxBuilder b;
  b.input("x", {1, 4});
  auto* t = b.g->add_initializer();
  t->set_name("w");
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->add_dims(1LL << 40);
  t->add_dims(1LL << 40);
  t->set_raw_data("abcd");
  b.node("MatMul", {"x", "w"}, {"y"});
  b.output("y");
  try {
    b.graph();
    FAIL();
  } catch (const catq::Error& e) {
    EXPECT_EQ(e.kind(), catq::ErrorKind::Format);
    EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos) << e.what();
  }
  OnnxBuilder c;
  c.input("x", {1, 4});
  c.init("w", at::randn({5, 3}));
  c.node("MatMul", {"x", "w"}, {"y"});
  c.output("y");
  catq::GraphExecutor ex(c.graph());
  EXPECT_THROW(ex.forward(at::randn({1, 4})), std::exception);
  EXPECT_THROW(ex.forward(at::randn({2, 5})), catq::Error);  // declared input shape [1,4]
}

// Found by fuzz_onnx (an OOM): a tensor's storage is checked against its declared shape before it is allocated, so a
// few bytes of protobuf declaring terabytes are a Format error, not an allocation; external-data fields are validated.
TEST(BadInputOnnx, HugeTensorWithShortDataIsRejectedBeforeAllocating) {
  auto expect_format = [](const std::function<void(onnx::TensorProto*)>& fill, const std::string& needle) {
    OnnxBuilder b;
    b.input("x", {1, 4});
    auto* t = b.g->add_initializer();
    t->set_name("w");
    fill(t);
    b.node("MatMul", {"x", "w"}, {"y"});
    b.output("y");
    try {
      b.graph();
      ADD_FAILURE() << "expected a Format error mentioning " << needle;
    } catch (const catq::Error& e) {
      EXPECT_EQ(e.kind(), catq::ErrorKind::Format) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  // 2^39 doubles = 4 TiB declared, 8 bytes present.
  expect_format([](onnx::TensorProto* t) {
    t->set_data_type(onnx::TensorProto::DOUBLE);
    t->add_dims(1LL << 20);
    t->add_dims(1LL << 19);
    t->set_raw_data(std::string(8, '\0'));
  }, "raw data");
  expect_format([](onnx::TensorProto* t) {
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->add_dims(1LL << 39);
    t->add_float_data(1.0f);
  }, "1 values");
  expect_format([](onnx::TensorProto* t) {
    t->set_data_type(onnx::TensorProto::INT8);
    t->add_dims(1LL << 39);
  }, "0 values");
  auto external = [](std::vector<std::pair<std::string, std::string>> kv) {
    return [kv](onnx::TensorProto* t) {
      t->set_data_type(onnx::TensorProto::DOUBLE);
      t->add_dims(1LL << 39);
      t->set_data_location(onnx::TensorProto::EXTERNAL);
      for (const auto& [k, v] : kv) {
        auto* e = t->add_external_data();
        e->set_key(k);
        e->set_value(v);
      }
    };
  };
  expect_format(external({{"location", "w.bin"}, {"offset", "x12"}}), "offset 'x12'");
  expect_format(external({{"location", "w.bin"}, {"length", "99999999999999999999999"}}), "length");
  expect_format(external({{"location", "w.bin"}, {"offset", "-1"}}), "offset '-1'");
  expect_format(external({{"location", "/etc/passwd"}}), "valid location");
  expect_format(external({{"location", "../w.bin"}}), "valid location");
  expect_format(external({{"location", "w.bin"}, {"length", "8"}}), "external length 8");
}

TEST(BadInputOnnx, TruncatedRealModel) {
  std::string p = std::string(CATQ_SOURCE_DIR) + "/../shared/assets/resnet-cifar10/resnet20.onnx";
  if (!catq::file_exists(p)) GTEST_SKIP() << p << " not found (../shared absent)";
  auto bytes = catq::read_file_bytes(p);
  for (size_t cut : {bytes.size() / 10, bytes.size() / 2, bytes.size() - 100}) {
    EXPECT_THROW(catq::parse_onnx(bytes.data(), cut, "resnet20-cut.onnx", "."), catq::Error) << cut;
  }
}
