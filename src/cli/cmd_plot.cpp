// `catq plot SPEC.json -o OUT.svg`: renders a line plot described as data (the benchmark scripts' figures).
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "core/file_util.h"
#include "eval/plot.h"

namespace catq::cli {

namespace {

struct PlotArgs {
  std::string spec, out;
};
PlotArgs args;

int run_plot() {
  CATQ_CHECK(!args.out.empty(), Usage, "plot: -o OUT.svg is required");
  const std::string svg = line_plot_svg_from_file(args.spec);
  write_file_atomic(args.out, svg.data(), svg.size());
  std::cout << "wrote " << args.out << "\n";
  return 0;
}

}  // namespace

void register_plot(CLI::App& app, Common&) {
  auto* sub = app.add_subcommand("plot", "Render a line plot (SVG) from a JSON description (used by bench/ scripts)");
  sub->footer("Spec: {\"title\": .., \"y_label\": .., \"x_labels\": [..], \"series\": [{\"label\": .., \"y\": [..], "
              "\"color\": \"#1f77b4\", \"dashed\": false}]}; null in y = a gap.\n\nExample:\n"
              "  catq plot bench/results/co_qat/plot.json -o docs/results/co_qat.svg\n");
  sub->add_option("spec", args.spec, "Plot description (JSON)")->required();
  sub->add_option("-o,--output", args.out, "Output SVG");
  sub->callback([] { run_plot(); });
}

}  // namespace catq::cli
