#include "eval/plot.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"

namespace catq {

namespace {
std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}
}  // namespace

std::string line_plot_svg(const std::string& title, const std::string& y_label, const std::vector<std::string>& x_labels,
                          const std::vector<PlotSeries>& series, int width, int height) {
  const double left = 70, right = 180, top = 40, bottom = 120;
  const double pw = width - left - right, ph = height - top - bottom;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& s : series)
    for (double v : s.y)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-9) hi = lo + 1;
  const double pad = 0.05 * (hi - lo);
  lo -= pad;
  hi += pad;
  const size_t n = std::max<size_t>(x_labels.size(), 1);
  auto X = [&](size_t i) { return left + (n == 1 ? pw / 2 : pw * static_cast<double>(i) / static_cast<double>(n - 1)); };
  auto Y = [&](double v) { return top + ph * (hi - v) / (hi - lo); };
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"24\" font-size=\"15\">{}</text>\n",
      width, height, left, escape(title));
  // Axes and horizontal grid.
  const int ticks = 6;
  for (int t = 0; t <= ticks; ++t) {
    const double v = lo + (hi - lo) * t / ticks, y = Y(v);
    s += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", left, y, left + pw, y);
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.1f}</text>\n", left - 6, y + 4, v);
  }
  s += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n", left, top + ph, left + pw, top + ph);
  s += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n", left, top, left, top + ph);
  s += fmt::format("<text transform=\"translate(18,{:.0f}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                   top + ph / 2, escape(y_label));
  const size_t every = std::max<size_t>(1, (x_labels.size() + 39) / 40);
  for (size_t i = 0; i < x_labels.size(); i += every)
    s += fmt::format("<text transform=\"translate({:.1f},{:.0f}) rotate(-60)\" text-anchor=\"end\" font-size=\"10\">{}</text>\n",
                     X(i), top + ph + 12, escape(x_labels[i]));
  // Series and legend.
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& se = series[k];
    std::string pts;
    for (size_t i = 0; i < se.y.size() && i < n; ++i)
      if (std::isfinite(se.y[i])) pts += fmt::format("{:.1f},{:.1f} ", X(i), Y(se.y[i]));
    s += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\"{} points=\"{}\"/>\n", se.color,
                     se.dashed ? " stroke-dasharray=\"5,4\"" : "", pts);
    const double ly = top + 10 + 20.0 * k;
    s += fmt::format("<line x1=\"{}\" y1=\"{:.0f}\" x2=\"{}\" y2=\"{:.0f}\" stroke=\"{}\" stroke-width=\"2\"{}/>\n",
                     left + pw + 12, ly, left + pw + 36, ly, se.color, se.dashed ? " stroke-dasharray=\"5,4\"" : "");
    s += fmt::format("<text x=\"{}\" y=\"{:.0f}\">{}</text>\n", left + pw + 42, ly + 4, escape(se.label));
  }
  s += "</svg>\n";
  return s;
}

std::string line_plot_svg_from_file(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file_text(path));
  } catch (const nlohmann::json::parse_error& e) {
    fail(ErrorKind::Format, "{}: not valid JSON ({})", path, e.what());
  }
  auto need = [&](const char* k, bool array) {
    CATQ_CHECK(j.contains(k) && (array ? j[k].is_array() : j[k].is_string()), Format,
               "{}: \"{}\" missing or not {} (expected {{title, y_label, x_labels: [..], series: [{{label, y: [..], "
               "color?, dashed?}}]}})", path, k, array ? "an array" : "a string");
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
               "{}: series[{}]: needs \"y\" with one value per x label ({})", path, i, x.size());
    PlotSeries p;
    p.label = s.value("label", fmt::format("series {}", i));
    for (const auto& v : s["y"]) p.y.push_back(v.is_number() ? v.get<double>() : std::nan(""));
    if (s.contains("color")) p.color = s["color"].get<std::string>();
    p.dashed = s.value("dashed", false);
    series.push_back(p);
  }
  return line_plot_svg(j["title"].get<std::string>(), j["y_label"].get<std::string>(), x, series);
}

}  // namespace catq
