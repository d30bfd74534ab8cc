// Minimal SVG line plots (no dependencies): one x position per item, several series.
#pragma once
#include <string>
#include <vector>

namespace catq {

struct PlotSeries {
  std::string label;
  std::vector<double> y;    // one value per x position (NaN = gap)
  std::string color = "#1f77b4";
  bool dashed = false;
};

// x_labels: one per position (shown rotated under the axis when there are few enough, else every k-th).
std::string line_plot_svg(const std::string& title, const std::string& y_label, const std::vector<std::string>& x_labels,
                          const std::vector<PlotSeries>& series, int width = 1100, int height = 480);
// The plot a JSON file describes: {title, y_label, x_labels: [..], series: [{label, y: [..] (null = gap), color?,
// dashed?}]}. Error(Io) when unreadable, Error(Format) naming the file and the field otherwise.
std::string line_plot_svg_from_file(const std::string& path);

}  // namespace catq
