// `catq plot SPEC.json -o OUT.svg`: renders a line plot described as data (the benchmark scripts' figures).
#include <cmath>
#include <iostream>

#include <nlohmann/json.hpp>

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
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file_text(args.spec));
  } catch (const nlohmann::json::parse_error& e) {
    fail(ErrorKind::Format, "{}: not valid JSON ({})", args.spec, e.what());
  }
  auto need = [&](const char* k, bool array) {
    CATQ_CHECK(j.contains(k) && (array ? j[k].is_array() : j[k].is_string()), Format,
               "{}: \"{}\" missing or not {} (expected {{title, y_label, x_labels: [..], series: [{{label, y: [..], "
               "color?, dashed?}}]}})", args.spec, k, array ? "an array" : "a string");
  };
  need("title", false);
  need("y_label", false);
  need("x_labels", true);
  need("series", true);
  std::vector<std::string> x;
  for (const auto& v : j["x_labels"]) x.push_back(v.is_string() ? v.get<std::string>() : v.dump());
  std::vector<PlotSeries> series;
  for (size_t i = 0; i < j["series"].size(); ++i) {
    const auto& s = j["series"][i];
    CATQ_CHECK(s.is_object() && s.contains("y") && s["y"].is_array() && s["y"].size() == x.size(), Format,
               "{}: series[{}]: needs \"y\" with one value per x label ({})", args.spec, i, x.size());
    PlotSeries p;
    p.label = s.value("label", fmt::format("series {}", i));
    for (const auto& v : s["y"]) p.y.push_back(v.is_number() ? v.get<double>() : std::nan(""));
    if (s.contains("color")) p.color = s["color"].get<std::string>();
    p.dashed = s.value("dashed", false);
    series.push_back(p);
  }
  const std::string svg = line_plot_svg(j["title"].get<std::string>(), j["y_label"].get<std::string>(), x, series);
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
