#include "eval/python_random.h"

#include "models/error.h"

namespace ct3::eval {

namespace {
constexpr int N = 624, M = 397;
constexpr uint32_t MATRIX_A = 0x9908b0dfu, UPPER_MASK = 0x80000000u, LOWER_MASK = 0x7fffffffu;
}  // namespace

// mt19937ar.c init_genrand, as CPython's _randommodule.c.
void PythonRandom::init_genrand(uint32_t s) {
    mt_[0] = s;
    for (int i = 1; i < N; ++i) mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
    index_ = N;
}

// CPython's random_seed for an int: the absolute value split into 32-bit words, least significant
// first, fed to init_by_array (a zero seed is one zero word).
PythonRandom::PythonRandom(uint64_t seed) {
    std::vector<uint32_t> key;
    for (uint64_t s = seed; s != 0; s >>= 32) key.push_back(static_cast<uint32_t>(s & 0xffffffffu));
    if (key.empty()) key.push_back(0);
    init_genrand(19650218u);
    int i = 1, j = 0;
    const int key_length = static_cast<int>(key.size());
    for (int k = N > key_length ? N : key_length; k > 0; --k) {
        mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + key[j] + static_cast<uint32_t>(j);
        ++i;
        ++j;
        if (i >= N) {
            mt_[0] = mt_[N - 1];
            i = 1;
        }
        if (j >= key_length) j = 0;
    }
    for (int k = N - 1; k > 0; --k) {
        mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) - static_cast<uint32_t>(i);
        ++i;
        if (i >= N) {
            mt_[0] = mt_[N - 1];
            i = 1;
        }
    }
    mt_[0] = 0x80000000u;
    index_ = N;
}

uint32_t PythonRandom::next_u32() {
    if (index_ >= N) {
        int kk = 0;
        for (; kk < N - M; ++kk) {
            const uint32_t y = (mt_[kk] & UPPER_MASK) | (mt_[kk + 1] & LOWER_MASK);
            mt_[kk] = mt_[kk + M] ^ (y >> 1) ^ ((y & 1u) ? MATRIX_A : 0u);
        }
        for (; kk < N - 1; ++kk) {
            const uint32_t y = (mt_[kk] & UPPER_MASK) | (mt_[kk + 1] & LOWER_MASK);
            mt_[kk] = mt_[kk + (M - N)] ^ (y >> 1) ^ ((y & 1u) ? MATRIX_A : 0u);
        }
        const uint32_t y = (mt_[N - 1] & UPPER_MASK) | (mt_[0] & LOWER_MASK);
        mt_[N - 1] = mt_[M - 1] ^ (y >> 1) ^ ((y & 1u) ? MATRIX_A : 0u);
        index_ = 0;
    }
    uint32_t y = mt_[index_++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= (y >> 18);
    return y;
}

uint32_t PythonRandom::getrandbits(int k) {
    CT3_CHECK(k >= 1 && k <= 32, ErrorKind::invalid_argument, "getrandbits: k must be in [1, 32], got {}", k);
    return next_u32() >> (32 - k);
}

uint64_t PythonRandom::randbelow(uint64_t n) {
    CT3_CHECK(n >= 1 && n <= 0xffffffffu, ErrorKind::invalid_argument, "randbelow: n must be in [1, 2^32), got {}", n);
    int k = 0;
    for (uint64_t v = n; v != 0; v >>= 1) ++k;  // n.bit_length()
    uint64_t r = getrandbits(k);
    while (r >= n) r = getrandbits(k);
    return r;
}

double PythonRandom::random() {
    const uint32_t a = next_u32() >> 5, b = next_u32() >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

}  // namespace ct3::eval
