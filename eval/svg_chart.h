// Small self-contained SVG bar charts for the evaluation reports (no plotting dependency: the
// report folder must render on GitHub and in any browser as it is).
#pragma once

#include <string>
#include <vector>

namespace ct3::eval {

// One horizontal bar: stacked segments drawn left to right (one segment = a plain bar).
struct BarRow {
    std::string label;
    std::vector<double> segments;
};

// Rows under a group heading (a task), separated from the next group by a gap.
struct BarGroup {
    std::string title;
    std::vector<BarRow> rows;
};

struct ChartStyle {
    std::string title;
    std::string unit;                     // appended to the value printed after each bar
    std::vector<std::string> legend;      // one name per segment, or per row position when color_by_row
    bool color_by_row = false;            // single-segment rows coloured by their position in the group
    double max_value = 0;                 // 0 = the largest bar
    int value_decimals = 3;
};

// The chart as a complete SVG document.
std::string bar_chart_svg(const std::vector<BarGroup> & groups, const ChartStyle & style);

// Escapes &, <, > and quotes for SVG/XML text.
std::string xml_escape(const std::string & text);

}  // namespace ct3::eval
