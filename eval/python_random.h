// Python's `random` module, bit for bit, for what the original harnesses do with it: the
// LLM-Adapters evaluation runs `random.seed(42); random.shuffle(items)` before `items[:limit]`, so
// `ct3-eval --limit N` on those tasks picks the same N items as the original only if it reproduces
// CPython's Mersenne Twister seeding (init_by_array over the seed's 32-bit words), getrandbits,
// _randbelow (rejection on n.bit_length() bits) and shuffle (Fisher-Yates from the end).
#pragma once

#include <array>
#include <cstddef>
#include <utility>
#include <cstdint>
#include <vector>

namespace ct3::eval {

class PythonRandom {
public:
    // random.seed(seed) for a non-negative int seed.
    explicit PythonRandom(uint64_t seed);

    uint32_t getrandbits(int k);  // 1 <= k <= 32
    uint64_t randbelow(uint64_t n);  // uniform in [0, n); n >= 1
    double random();                 // [0, 1), 53-bit

    // random.shuffle(items) in place.
    template <typename T>
    void shuffle(std::vector<T> & items) {
        for (std::size_t i = items.size(); i-- > 1;) {
            const std::size_t j = static_cast<std::size_t>(randbelow(i + 1));
            std::swap(items[i], items[j]);
        }
    }

private:
    uint32_t next_u32();
    void init_genrand(uint32_t s);

    std::array<uint32_t, 624> mt_{};
    int index_ = 625;
};

}  // namespace ct3::eval
