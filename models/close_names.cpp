#include "models/close_names.h"

#include <algorithm>
#include <utility>

namespace ct3 {

namespace {

size_t edit_distance(const std::string & a, const std::string & b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = up;
        }
    }
    return row[b.size()];
}

}  // namespace

std::vector<std::string> close_names(const std::string & name, const std::vector<std::string> & candidates,
                                     size_t max_count) {
    const size_t threshold = std::max<size_t>(3, name.size() / 3);
    std::vector<std::pair<size_t, std::string>> scored;
    for (const auto & c : candidates) {
        const size_t length_gap = c.size() > name.size() ? c.size() - name.size() : name.size() - c.size();
        // A missing or extra prefix ("model.") is a common mistake: containment counts as close.
        if (!name.empty() && (c.find(name) != std::string::npos || name.find(c) != std::string::npos)) {
            scored.emplace_back(length_gap, c);
        } else if (length_gap <= threshold) {  // the distance is at least the gap: skip the O(n*m) work
            const size_t d = edit_distance(name, c);
            if (d <= threshold) scored.emplace_back(d, c);
        }
    }
    std::sort(scored.begin(), scored.end());
    std::vector<std::string> out;
    for (size_t i = 0; i < scored.size() && i < max_count; ++i) out.push_back(scored[i].second);
    return out;
}

std::string describe_close_names(const std::string & name, const std::vector<std::string> & candidates) {
    const auto close = close_names(name, candidates);
    if (close.empty()) return {};
    std::string out = "; close names:";
    for (size_t i = 0; i < close.size(); ++i) out += (i ? ", '" : " '") + close[i] + "'";
    return out;
}

}  // namespace ct3
