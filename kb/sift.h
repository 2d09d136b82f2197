// SIFT (Hübotter et al., ICLR 2025): greedy selection of informative, non-redundant neighbours.
//
// Exactly the VTL acquisition of activeft's Retriever (see ct3_original.md §2.3): a linear kernel
// over the candidates x_1..x_K and the query q, prior covariance Σ = Z Zᵀ with Z = [x; q], noise λ.
// Step i picks j* = argmin_j  v_j = Σ_qq − Σ_qj² / (Σ_jj + λ)  over all K candidates (a candidate may
// be picked again: it counts as one more noisy observation), then conditions Σ on j*:
//   Σ ← Σ − Σ[:, j*] Σ[j*, :] / (Σ_j*j* + λ).
// The variance after step i is σ_i² = v_j*; it decreases along the picks.
//
// Implementation: Σ is never formed. After n picks Σ = Σ₀ − U Uᵀ with u_t = Σ_{t−1}[:, j_t] /
// sqrt(Σ_{t−1}[j_t, j_t] + λ), and one column of Σ₀ is one matrix-vector product, so a selection costs
// O(N·K·(d + N)) instead of the O(K²·d) Gram matrix. Accumulation is in double. Ties go to the
// lowest candidate index (activeft's argmax order with its shuffle off).
#pragma once

#include <cstdint>
#include <vector>

namespace ct3::kb {

struct SiftPick {
    int64_t candidate = -1;  // row in the candidate matrix
    double variance = 0;     // posterior variance of the query after this pick (σ_i²)
};

// candidates: [K, d] row-major; query: [d]. Returns n picks in selection order (n may exceed K:
// repeats are allowed). Throws ct3::Error (invalid_argument) for K == 0 with n > 0, d <= 0, λ <= 0
// or non-finite inputs.
std::vector<SiftPick> sift_select(const float * candidates, int64_t K, const float * query, int64_t d, int64_t n,
                                  double lambda);

}  // namespace ct3::kb
