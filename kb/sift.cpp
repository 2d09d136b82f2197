#include "kb/sift.h"

#include <cmath>
#include <limits>

#include <faiss/utils/distances.h>

#include "models/error.h"

namespace ct3::kb {

std::vector<SiftPick> sift_select(const float * candidates, int64_t K, const float * query, int64_t d, int64_t n,
                                  double lambda) {
    CT3_CHECK(d > 0, ErrorKind::invalid_argument, "sift: dimension must be positive (got {})", d);
    CT3_CHECK(n >= 0, ErrorKind::invalid_argument, "sift: number of picks must be >= 0 (got {})", n);
    CT3_CHECK(std::isfinite(lambda) && lambda > 0, ErrorKind::invalid_argument,
              "sift: lambda must be a positive finite number (got {})", lambda);
    if (n == 0) return {};
    CT3_CHECK(K > 0, ErrorKind::invalid_argument, "sift: {} picks requested from an empty candidate set", n);
    for (int64_t i = 0; i < K * d; ++i)
        CT3_CHECK(std::isfinite(candidates[i]), ErrorKind::invalid_argument,
                  "sift: candidate {} has a non-finite component", i / d);
    for (int64_t i = 0; i < d; ++i)
        CT3_CHECK(std::isfinite(query[i]), ErrorKind::invalid_argument, "sift: query has a non-finite component");

    // Current joint covariance, restricted to what the acquisition reads: Σ_qq, Σ_qj and Σ_jj.
    // Columns of Σ₀ come from SIMD inner products; the running updates are kept in double.
    std::vector<float> column_f(static_cast<size_t>(K));
    faiss::fvec_inner_products_ny(column_f.data(), query, candidates, size_t(d), size_t(K));
    std::vector<double> cov_qj(column_f.begin(), column_f.end());
    std::vector<double> cov_jj(static_cast<size_t>(K));
    for (int64_t j = 0; j < K; ++j) cov_jj[j] = faiss::fvec_norm_L2sqr(candidates + j * d, size_t(d));
    double cov_qq = faiss::fvec_norm_L2sqr(query, size_t(d));

    // Σ = Σ₀ − Σ_t u_t u_tᵀ: u_rows[t] holds u_t over the K candidates (its query entry is folded
    // into Σ_qq and Σ_qj as soon as it is known, so it need not be kept).
    std::vector<std::vector<double>> u_rows;
    u_rows.reserve(static_cast<size_t>(n));

    std::vector<SiftPick> picks;
    picks.reserve(static_cast<size_t>(n));
    std::vector<double> column(static_cast<size_t>(K));
    for (int64_t step = 0; step < n; ++step) {
        int64_t best = -1;
        double best_variance = std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < K; ++j) {
            const double variance = cov_qq - cov_qj[j] * cov_qj[j] / (cov_jj[j] + lambda);
            if (variance < best_variance) {  // strict: ties keep the lowest index
                best_variance = variance;
                best = j;
            }
        }
        CT3_ASSERT(best >= 0);
        picks.push_back({best, best_variance});
        if (step + 1 == n) break;

        // Column j* of the current Σ: Σ₀[:, j*] minus the previous rank-1 terms.
        faiss::fvec_inner_products_ny(column_f.data(), candidates + best * d, candidates, size_t(d), size_t(K));
        for (int64_t i = 0; i < K; ++i) column[i] = column_f[i];
        const double column_q = cov_qj[best];  // Σ[q, j*] is already current
        for (size_t t = 0; t < u_rows.size(); ++t) {
            const double scale = u_rows[t][best];
            const double * u = u_rows[t].data();
            for (int64_t i = 0; i < K; ++i) column[i] -= u[i] * scale;
        }
        column[best] = cov_jj[best];  // the tracked diagonal is the most accurate value
        const double inv_norm = 1.0 / std::sqrt(cov_jj[best] + lambda);
        std::vector<double> u(static_cast<size_t>(K));
        for (int64_t i = 0; i < K; ++i) u[i] = column[i] * inv_norm;
        const double uq = column_q * inv_norm;
        for (int64_t i = 0; i < K; ++i) {
            cov_qj[i] -= uq * u[i];
            cov_jj[i] -= u[i] * u[i];
        }
        cov_qq -= uq * uq;
        u_rows.push_back(std::move(u));
    }
    return picks;
}

}  // namespace ct3::kb
