// Each `catq` subcommand lives in its own cli/cmd_*.cpp and registers itself on the app.
#pragma once
#include <CLI/CLI.hpp>

namespace catq::cli {

// Options every subcommand shares.
struct Common {
  bool json = false;   // machine-readable output on stdout
  bool quiet = false;  // no progress bars
};

void register_info(CLI::App& app, Common& common);
void register_eval(CLI::App& app, Common& common);
void register_generate(CLI::App& app, Common& common);
void register_demo(CLI::App& app, Common& common);
void register_quantize(CLI::App& app, Common& common);
void register_analyze(CLI::App& app, Common& common);
void register_train_llm(CLI::App& app, Common& common);
void register_train_tokenizer(CLI::App& app, Common& common);
void register_qat_plan(CLI::App& app, Common& common);
void register_qat(CLI::App& app, Common& common);
void register_plot(CLI::App& app, Common& common);
void register_export(CLI::App& app, Common& common);
void register_bench(CLI::App& app, Common& common);

}  // namespace catq::cli
