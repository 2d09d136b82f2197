// "Did you mean ...?" suggestions for not_found errors (tensor names, config keys, ...).
#pragma once

#include <string>
#include <vector>

namespace ct3 {

// Up to `max_count` candidates close to `name` (small edit distance, or one contains the other),
// closest first. Cost is bounded even for very long hostile candidates.
std::vector<std::string> close_names(const std::string & name, const std::vector<std::string> & candidates,
                                     size_t max_count = 5);

// "; close names: 'a', 'b'" or "" when nothing is close; ready to append to an error message.
std::string describe_close_names(const std::string & name, const std::vector<std::string> & candidates);

}  // namespace ct3
