// `catq` — the command-line front end. Exit codes: 0 ok, 1 internal error, 2 usage, 3 I/O,
// 4 malformed file, 5 unsupported input, 6 bad config, 7 bad data (see core/error.h).
#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/temp_files.h"
#include "core/threads.h"

int main(int argc, char** argv) {
  using namespace catq;
  CLI::App app{"catq — quantize neural networks (CNNs from ONNX, Llama-family LLMs) and report honestly.\n\n"
               "Examples:\n"
               "  catq demo                                   train an MNIST CNN, then compare FP32 and RTN W8A8/W4A4/W2A2\n"
               "  catq info model.onnx                        graph summary\n"
               "  catq eval resnet20.onnx --data test.bin --split eval --quant w4a4.json\n"
               "  catq quantize resnet20.onnx --method pdquant+cat --bits w2a2 --calib test.bin -o r20.catq\n"
               "  catq eval r20.catq --data test.bin --split eval --reference resnet20.onnx\n"
               "  catq generate stories260K.bin --tokenizer tok512.bin --prompt \"Once upon a time\"\n"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "catq 0.1.0");
  cli::Common common;
  app.add_flag("--json", common.json, "Machine-readable JSON on stdout");
  app.add_flag("-q,--quiet", common.quiet, "No progress bars");
  app.fallthrough();
  cli::register_info(app, common);
  cli::register_eval(app, common);
  cli::register_generate(app, common);
  cli::register_quantize(app, common);
  cli::register_analyze(app, common);
  cli::register_train_llm(app, common);
  cli::register_train_tokenizer(app, common);
  cli::register_qat(app, common);
  cli::register_plot(app, common);
  cli::register_qat_plan(app, common);
  cli::register_export(app, common);
  cli::register_bench(app, common);
  cli::register_demo(app, common);
  init_threads();
  // Ctrl-C / kill / a file-size limit never leave a partial output file (core/temp_files.h).
  install_fatal_signal_cleanup();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);  // prints help / the parse error
    return code == 0 ? 0 : static_cast<int>(ErrorKind::Usage);
  } catch (const Error& e) {
    std::fprintf(stderr, "catq: error: %s\n", e.what());
    return e.exit_code();
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "catq: error: tensor operation failed: %s\n", e.what_without_backtrace());
    return static_cast<int>(ErrorKind::Internal);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "catq: error: %s\n", e.what());
    return static_cast<int>(ErrorKind::Internal);
  }
  return 0;
}
