#include "eval/svg_chart.h"

#include <algorithm>
#include <numeric>
#include <sstream>

#include <fmt/format.h>

namespace ct3::eval {

namespace {
const char * const kPalette[] = {"#4878a8", "#e08a3c", "#5aa05a", "#c44e52", "#8172b2", "#937860", "#da8bc3"};
const char * color(size_t i) {
    return kPalette[i % (sizeof(kPalette) / sizeof(kPalette[0]))];
}
}  // namespace

std::string xml_escape(const std::string & text) {
    std::string out;
    for (char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            default: out += c;
        }
    }
    return out;
}

std::string bar_chart_svg(const std::vector<BarGroup> & groups, const ChartStyle & style) {
    const int row_height = 20, group_gap = 10, label_width = 170, bar_width = 440, top = 46;
    double max_value = style.max_value;
    if (max_value <= 0) {
        for (const auto & g : groups) {
            for (const auto & r : g.rows) {
                max_value = std::max(max_value, std::accumulate(r.segments.begin(), r.segments.end(), 0.0));
            }
        }
    }
    int height = top;
    for (const auto & g : groups) height += row_height * static_cast<int>(g.rows.size()) + group_gap + (g.title.empty() ? 0 : 18);
    height += 10;
    std::ostringstream svg;
    svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << label_width + bar_width + 90 << "\" height=\""
        << height << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
        << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        << "<text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\">" << xml_escape(style.title) << "</text>\n";
    // Legend on one line under the title.
    int x = 10;
    for (size_t i = 0; i < style.legend.size(); ++i) {
        svg << "<rect x=\"" << x << "\" y=\"28\" width=\"10\" height=\"10\" fill=\"" << color(i) << "\"/>"
            << "<text x=\"" << x + 14 << "\" y=\"37\">" << xml_escape(style.legend[i]) << "</text>\n";
        x += 24 + 7 * static_cast<int>(style.legend[i].size());
    }
    int y = top;
    for (const auto & g : groups) {
        if (!g.title.empty()) {
            svg << "<text x=\"10\" y=\"" << y + 13 << "\" font-weight=\"bold\">" << xml_escape(g.title) << "</text>\n";
            y += 18;
        }
        for (size_t r = 0; r < g.rows.size(); ++r) {
            const BarRow & row = g.rows[r];
            svg << "<text x=\"" << label_width - 6 << "\" y=\"" << y + 14 << "\" text-anchor=\"end\">"
                << xml_escape(row.label) << "</text>\n";
            double offset = 0, total = 0;
            for (size_t s = 0; s < row.segments.size(); ++s) {
                const double v = std::max(0.0, row.segments[s]);
                const double x0 = max_value > 0 ? bar_width * std::min(1.0, offset / max_value) : 0;
                const double x1 = max_value > 0 ? bar_width * std::min(1.0, (offset + v) / max_value) : 0;
                svg << fmt::format("<rect x=\"{:.1f}\" y=\"{}\" width=\"{:.1f}\" height=\"15\" fill=\"{}\"/>\n",
                                   label_width + x0, y + 3, x1 - x0, color(style.color_by_row ? r : s));
                offset += v;
                total += row.segments[s];
            }
            const double end = max_value > 0 ? bar_width * std::min(1.0, offset / max_value) : 0;
            svg << fmt::format("<text x=\"{:.1f}\" y=\"{}\">{:.{}f}{}</text>\n", label_width + end + 5, y + 14, total,
                               style.value_decimals, xml_escape(style.unit));
            y += row_height;
        }
        y += group_gap;
    }
    svg << "</svg>\n";
    return svg.str();
}

}  // namespace ct3::eval
