// bench/kernels: the packed low-bit kernels (src/runtime) against oneDNN fp32 (dnnl_sgemm) and int8
// (dnnl_gemm_u8s8s32) on LLM-like shapes, in one run, plus a STREAM-like bandwidth measurement that the W4A16
// GEMV's effective bandwidth is compared with. Prints markdown. Built on demand (not part of `make test`):
//   cmake --build build --target catq_bench_kernels && OMP_NUM_THREADS=1 build/catq_bench_kernels
// Every timing is the best of --reps runs. Our kernels are single-threaded; run oneDNN with OMP_NUM_THREADS=1 too
// for a per-core comparison (bench/kernels.sh does).
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "io/gguf.h"
#include "runtime/block_matvec.h"
#include "runtime/int_gemm.h"
#include <fmt/format.h>
#include "runtime/kernels.h"
#include "runtime/packed.h"

using namespace catq;

namespace {

double best_seconds(int reps, const std::function<void()>& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

volatile float g_sink;

// Streaming read: four independent vector accumulators so the loop is bound by memory, not by the add latency
// (a plain float sum is not vectorised without -ffast-math).
#if defined(__x86_64__)
#include <immintrin.h>
// Prefetch: every line also prefetched 1 KB ahead (what the GEMV kernels do): on CPUs whose hardware prefetcher
// keeps few lines in flight, one core's read rate is bound by its misses in flight, not by DRAM.
template <bool Prefetch>
__attribute__((target("avx2"))) float read_sum_avx2(const float* a, size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (size_t i = 0; i + 32 <= n; i += 32) {
    if constexpr (Prefetch) {
      _mm_prefetch(reinterpret_cast<const char*>(a + i + 256), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(a + i + 272), _MM_HINT_T0);
    }
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
  }
  float out[8];
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  return out[0] + out[7];
}
#endif
float read_sum(const float* a, size_t n, bool prefetch = false) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) return prefetch ? read_sum_avx2<true>(a, n) : read_sum_avx2<false>(a, n);
#endif
  (void)prefetch;
  float s[8] = {};
  for (size_t i = 0; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) s[k] += a[i + k];
  return s[0] + s[7];
}

// Random 2/3-bit indices with a random sorted codebook per row (speed does not depend on the values).
PackedCodebook random_codebook(int64_t rows, int64_t cols, int bits, std::mt19937& rng) {
  std::vector<int32_t> idx(static_cast<size_t>(rows * cols));
  for (auto& i : idx) i = static_cast<int32_t>(rng() % (1u << bits));
  std::vector<float> cb(static_cast<size_t>(rows << bits));
  std::normal_distribution<float> N01(0, 0.02f);
  for (auto& v : cb) v = N01(rng);
  return pack_codebook(idx.data(), rows, cols, bits, cb.data(), rows);
}

double codebook_bytes(const PackedCodebook& p) {
  return static_cast<double>(p.lo.size() + p.hi.size()) + 4.0 * p.codebook.size();
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512vnni"))) double vpdpbusd_rate() {
  __m512i a0 = _mm512_set1_epi32(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  const __m512i b = _mm512_set1_epi32(0x01010101), c = _mm512_set1_epi32(0x02020202);
  const long n = 20000000;
  const auto t0 = std::chrono::steady_clock::now();
  for (long k = 0; k < n; ++k) {
    a0 = _mm512_dpbusd_epi32(a0, b, c), a1 = _mm512_dpbusd_epi32(a1, b, c), a2 = _mm512_dpbusd_epi32(a2, b, c);
    a3 = _mm512_dpbusd_epi32(a3, b, c), a4 = _mm512_dpbusd_epi32(a4, b, c), a5 = _mm512_dpbusd_epi32(a5, b, c);
    a6 = _mm512_dpbusd_epi32(a6, b, c), a7 = _mm512_dpbusd_epi32(a7, b, c);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const __m512i sum = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                                       _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
  g_sink = static_cast<float>(_mm512_reduce_add_epi32(sum));
  return 8.0 * n * 64 / s / 1e9;  // G multiply-adds / s
}
#else
double vpdpbusd_rate() { return 0.0; }
#endif

// The lean runtime's prefill GEMM (runtime/block_matvec.h) on an FFN shape at T = 256 tokens, one thread, against the
// core's vpdpbusd peak (8 independent chains).
void lean_gemm(int reps) {
  const int64_t N = 5632, K = 2048, T = 256;
  std::mt19937 rng(3);
  std::normal_distribution<float> N01(0, 1);
  std::vector<float> w(static_cast<size_t>(N * K)), x(static_cast<size_t>(T * K)), y(static_cast<size_t>(T * N));
  for (auto& v : w) v = N01(rng) * 0.02f;
  for (auto& v : x) v = N01(rng);
  const bool vnni = block_matmul_isa(best_isa()) == KernelIsa::Avx512;
  const double peak = vnni ? vpdpbusd_rate() : 0.0;
  std::printf("| lean prefill GEMM (%lldx%lld, %lld tokens, 1 thread) | ms | G MAC/s | %% of vpdpbusd peak (%.0f G MAC/s) |\n|---|---:|---:|---:|\n",
              static_cast<long long>(N), static_cast<long long>(K), static_cast<long long>(T), peak);
  ActQ8 xq;
  quantize_act_q8(x.data(), T, K, xq, best_isa());
  const at::Tensor wt = at::from_blob(w.data(), {N, K}, at::kFloat);
  for (auto [type, name] : std::vector<std::pair<uint32_t, const char*>>{
           {GGML_Q4_0, "q4_0"}, {GGML_Q8_0, "q8_0"}, {GGML_Q4_K, "q4_k"}, {GGML_Q6_K, "q6_k"}}) {
    const std::string bytes = quantize_gguf_blocks(wt, type);
    const BlockMatrix m = block_matrix(type, N, K, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name);
    const double t = best_seconds(reps, [&] { block_matmul(m, x.data(), xq, T, y.data(), N, 0, m.row_groups(), best_isa()); });
    const double macs = static_cast<double>(N) * K * T / t / 1e9;
    std::printf("| catq lean %s, %s | %.2f | %.1f | %.0f |\n", name, vnni ? "AVX-512 VNNI" : "scalar", t * 1e3, macs,
                peak > 0 ? 100 * macs / peak : 0.0);
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  bool quick = false, gemv_only = false, lean_gemm_only = false, int_gemm_only = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--gemv-only")) gemv_only = true;
    else if (!std::strcmp(argv[i], "--lean-gemm-only")) lean_gemm_only = true;
    else if (!std::strcmp(argv[i], "--int-gemm-only")) int_gemm_only = true;
    else {
      std::fprintf(stderr, "usage: %s [--reps N] [--quick] [--gemv-only] [--lean-gemm-only] [--int-gemm-only]\n",
                   argv[0]);
      return 2;
    }
  }
  std::printf("ISA: %s (best on this CPU; CATQ_ISA caps it). Times: best of %d runs.\n\n", to_string(best_isa()), reps);
  if (!int_gemm_only) lean_gemm(reps);
  if (lean_gemm_only) return 0;

  // ---- memory bandwidth (arrays far beyond the last-level cache) ----
  const size_t n = (quick ? 32ull : 128ull) << 20;  // floats per array (512 MiB at full size)
  std::vector<float> a(n, 1.0f), b(n, 0.0f);
  const double t_copy = best_seconds(reps, [&] { std::memcpy(b.data(), a.data(), n * sizeof(float)); g_sink = b[n / 2]; });
  const double t_read_plain = best_seconds(reps, [&] { g_sink = read_sum(a.data(), n); });
  const double t_read_pf = best_seconds(reps, [&] { g_sink = read_sum(a.data(), n, true); });
  // The read limit the GEMV rows are held against: the better of the two reads.
  const double t_read = std::min(t_read_plain, t_read_pf);
  const double copy_gbs = 2.0 * n * sizeof(float) / t_copy / 1e9, read_gbs = n * sizeof(float) / t_read / 1e9;
  double read2_gbs = 0;  // two threads of the pool, each reading half with prefetch
  {
    ThreadPool pool2(2);
    float part[2] = {0, 0};
    const double t2 = best_seconds(reps, [&] {
      pool2.run([&](int th, int nth) {
        const size_t b = n / nth * th, e = th + 1 == nth ? n : n / nth * (th + 1);
        part[th] = read_sum(a.data() + b, e - b, true);
      });
      g_sink = part[0] + part[1];
    });
    read2_gbs = n * sizeof(float) / t2 / 1e9;
  }
  std::printf("| memory (%.0f MiB arrays) | GB/s |\n|---|---:|\n| copy (read + write counted) | %.2f |\n| read (sum) | %.2f |\n"
              "| read (sum, lines prefetched 1 KB ahead) | %.2f |\n| read, 2 threads (prefetched) | %.2f |\n\n",
              n * sizeof(float) / 1048576.0, copy_gbs, n * sizeof(float) / t_read_plain / 1e9,
              n * sizeof(float) / t_read_pf / 1e9, read2_gbs);
  std::vector<float>().swap(a);
  std::vector<float>().swap(b);

  if (!int_gemm_only) {  // the GEMV sections
    // ---- compute rate with the weights in cache (1024×1024: 0.25–1 MB) ----
    {
      std::mt19937 rng(2);
      std::normal_distribution<float> N01(0, 1);
      const int64_t K = 1024, N = 1024;
      std::vector<float> w(static_cast<size_t>(N * K)), x(static_cast<size_t>(K)), y(static_cast<size_t>(N));
      for (auto& v : w) v = N01(rng);
      for (auto& v : x) v = N01(rng);
      std::printf("| GEMV in cache (M = 1, 1024x1024) | G weights / s | eff. GB/s |\n|---|---:|---:|\n");
      for (auto [bits, group] : std::vector<std::pair<int, int64_t>>{{8, K}, {4, 32}, {4, 128}, {4, K}, {2, 32}}) {
        PackedWeights p = pack_weights(w.data(), N, K, bits, group, bits != 2);
        const double t = best_seconds(reps * 20, [&] { gemv_packed(p, x.data(), y.data()); });
        std::printf("| catq W%dA16 g%lld, f32 activations | %.2f | %.2f |\n", bits, static_cast<long long>(p.group),
                    N * K / t / 1e9, (p.q.size() + 8.0 * p.scale.size()) / t / 1e9);
        const double ti = best_seconds(reps * 20, [&] { gemv_packed_i16(p, x.data(), y.data()); });
        std::printf("| catq W%dA16 g%lld, int16 activations%s | %.2f | %.2f |\n", bits, static_cast<long long>(p.group),
                    i16_simd() && i16_supported(p) ? "" : " (scalar)", N * K / ti / 1e9,
                    (p.q.size() + 8.0 * p.scale.size()) / ti / 1e9);
      }
      for (int bits : {3, 2}) {  // k-means codebook indices, a codebook per row
        const PackedCodebook p = random_codebook(N, K, bits, rng);
        const double t = best_seconds(reps * 20, [&] { gemv_codebook(p, x.data(), y.data()); });
        std::printf("| catq W%dA16 k-means codebook (per row) | %.2f | %.2f |\n", bits, N * K / t / 1e9,
                    codebook_bytes(p) / t / 1e9);
      }
      std::printf("\n");
    }

    // ---- W4A16 GEMV beyond the last-level cache: a sweep over enough 4096×11008 layers to hold ≥ the array size ----
    {
      const int64_t K = 4096, N = 11008;
      std::mt19937 rng(1);
      std::normal_distribution<float> N01(0, 1);
      std::vector<float> w(static_cast<size_t>(N * K));
      for (auto& v : w) v = N01(rng) * 0.02f;
      std::printf("| GEMV sweep beyond the LLC (M = 1, %lldx%lld layers) | layers | MB | ms / sweep | eff. GB/s | %% of read BW |\n"
                  "|---|---:|---:|---:|---:|---:|\n", static_cast<long long>(K), static_cast<long long>(N));
      for (int bits : {8, 4, 2}) {
        PackedWeights p = pack_weights(w.data(), N, K, bits, bits == 8 ? K : 32, bits != 2);
        const double layer_bytes = static_cast<double>(p.q.size()) + 8.0 * p.scale.size();
        const int layers = static_cast<int>(std::ceil(n * sizeof(float) / layer_bytes));
        std::vector<PackedWeights> all(static_cast<size_t>(layers), p);
        std::vector<float> x(static_cast<size_t>(K)), y(static_cast<size_t>(N));
        for (auto& v : x) v = N01(rng);
        for (bool i16 : {false, true}) {
          const double t = best_seconds(reps, [&] {
            for (const auto& l : all) i16 ? gemv_packed_i16(l, x.data(), y.data()) : gemv_packed(l, x.data(), y.data());
          });
          const double gbs = layers * layer_bytes / t / 1e9;
          std::printf("| catq W%dA16 g%lld, %s activations | %d | %.0f | %.2f | %.2f | %.0f |\n", bits,
                      static_cast<long long>(p.group), i16 ? "int16" : "f32", layers, layers * layer_bytes / 1e6, t * 1e3,
                      gbs, 100 * gbs / read_gbs);
        }
      }
      // The lean runtime's GGUF-block kernels (runtime/block_matvec.h, Q8_0 activations), row groups split over 1 and
      // 2 threads of the pool as LeanLlama does.
      for (auto [type, name] : std::vector<std::pair<uint32_t, const char*>>{
               {GGML_Q4_0, "q4_0"}, {GGML_Q8_0, "q8_0"}, {GGML_Q4_K, "q4_k"}, {GGML_Q6_K, "q6_k"}}) {
        const at::Tensor wt = at::from_blob(w.data(), {N, K}, at::kFloat);
        const std::string bytes = quantize_gguf_blocks(wt, type);
        const BlockMatrix m = block_matrix(type, N, K, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name);
        const double layer_bytes = static_cast<double>(m.bytes());
        const int layers = static_cast<int>(std::ceil(n * sizeof(float) / layer_bytes));
        std::vector<BlockMatrix> all(static_cast<size_t>(layers), m);
        std::vector<float> x(static_cast<size_t>(K)), y(static_cast<size_t>(N));
        for (auto& v : x) v = N01(rng);
        ActQ8 xq;
        quantize_act_q8(x.data(), 1, K, xq, best_isa());
        for (int threads : {1, 2}) {
          ThreadPool pool(threads);
          const double t = best_seconds(reps, [&] {
            for (const auto& l : all)
              pool.parallel_for(l.row_groups(), [&](int64_t g0, int64_t g1) {
                block_matmul(l, x.data(), xq, 1, y.data(), N, g0, g1, best_isa());
              });
          });
          const double gbs = layers * layer_bytes / t / 1e9;
          // %% of the read rate at the same thread count.
          std::printf("| catq lean %s (file %.2f bits/weight, repacked %.2f), Q8_0 activations, %d thread%s | %d | %.0f | %.2f | %.2f | %.0f |\n",
                      name, 8.0 * bytes.size() / (N * K), 8.0 * layer_bytes / (N * K), threads, threads > 1 ? "s" : "", layers,
                      layers * layer_bytes / 1e6, t * 1e3, gbs, 100 * gbs / (threads > 1 ? read2_gbs : read_gbs));
        }
      }
      for (int bits : {3, 2}) {
        const PackedCodebook p = random_codebook(N, K, bits, rng);
        const int layers = static_cast<int>(std::ceil(n * sizeof(float) / codebook_bytes(p)));
        std::vector<PackedCodebook> all(static_cast<size_t>(layers), p);
        std::vector<float> x(static_cast<size_t>(K)), y(static_cast<size_t>(N));
        for (auto& v : x) v = N01(rng);
        const double t = best_seconds(reps, [&] { for (const auto& l : all) gemv_codebook(l, x.data(), y.data()); });
        const double gbs = layers * codebook_bytes(p) / t / 1e9;
        std::printf("| catq W%dA16 k-means codebook (per row) | %d | %.0f | %.2f | %.2f | %.0f |\n", bits, layers,
                    layers * codebook_bytes(p) / 1e6, t * 1e3, gbs, 100 * gbs / read_gbs);
      }
      std::printf("\n");
    }
  }

  if (gemv_only) return 0;
  std::printf("| K×N | M | kernel | ms | GFLOP/s | vs oneDNN fp32 | vs oneDNN int8 | weight MB | eff. GB/s | %% of read BW |\n");
  std::printf("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
  std::mt19937 rng(0);
  std::normal_distribution<float> N01(0, 1);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 4096}, {4096, 11008}};
  for (auto [K, N] : shapes) {
    std::vector<float> w(static_cast<size_t>(N * K));
    for (auto& v : w) v = N01(rng) * 0.02f;
    std::vector<int8_t> w8(w.size());
    for (size_t i = 0; i < w.size(); ++i) w8[i] = static_cast<int8_t>(std::clamp(std::nearbyint(w[i] * 2000.f), -127.f, 127.f));
    PackedWeights p8 = pack_weights(w.data(), N, K, 8, K, true);
    PackedWeights p4 = pack_weights(w.data(), N, K, 4, 32, true);
    PackedWeights p2 = pack_weights(w.data(), N, K, 2, 32, false);
    // Integer GEMM weights (per output channel, symmetric): W8A8, W4A8, W4A4.
    const IntWeights i8 = prepare_int_weights(pack_weights(w.data(), N, K, 8, K, true));
    const IntWeights i4 = prepare_int_weights(pack_weights(w.data(), N, K, 4, K, true));
    for (int64_t M : {int64_t{1}, int64_t{512}}) {
      if (quick && M > 1) continue;
      const int r = M == 1 ? reps : std::max(1, reps / 2);
      std::vector<float> x(static_cast<size_t>(M * K)), y(static_cast<size_t>(M * N));
      for (auto& v : x) v = N01(rng);
      std::vector<uint8_t> x8(x.size());
      for (size_t i = 0; i < x.size(); ++i) x8[i] = static_cast<uint8_t>(std::clamp(std::nearbyint(x[i] * 30.f + 128.f), 0.f, 255.f));
      std::vector<int32_t> y32(y.size());
      const int32_t co = 0;
      const double t_f32 = best_seconds(r, [&] {
        dnnl_sgemm('N', 'T', M, N, K, 1.0f, x.data(), K, w.data(), K, 0.0f, y.data(), N);
      });
      const double t_i8 = best_seconds(r, [&] {
        dnnl_gemm_u8s8s32('N', 'T', 'F', M, N, K, 1.0f, x8.data(), K, 128, w8.data(), K, 0, 0.0f, y32.data(), N, &co);
      });
      const double flops = 2.0 * M * N * K;
      auto row = [&](const char* name, double t, double weight_bytes) {
        const double gbs = weight_bytes / t / 1e9;
        std::printf("| %lldx%lld | %lld | %s | %.3f | %.1f | %.2f | %.2f | %.1f | %.2f | %s |\n", static_cast<long long>(K),
                    static_cast<long long>(N), static_cast<long long>(M), name, t * 1e3, flops / t / 1e9, t_f32 / t,
                    t_i8 / t, weight_bytes / 1e6, gbs, M == 1 ? std::to_string(static_cast<int>(100 * gbs / read_gbs)).c_str() : "–");
      };
      row("oneDNN fp32 sgemm", t_f32, 4.0 * N * K);
      row("oneDNN int8 u8s8s32", t_i8, 1.0 * N * K);
      for (auto* pw : {&p8, &p4, &p2}) {
        if (int_gemm_only) break;
        const double t = best_seconds(r, [&] { gemm_packed(*pw, x.data(), M, y.data()); });
        const double bytes = static_cast<double>(pw->q.size()) + 8.0 * pw->scale.size();
        const std::string name = "catq W" + std::to_string(pw->bits) + "A16 g" + std::to_string(pw->group);
        row(name.c_str(), t, bytes);
        if (M == 1) {  // the decode path of the runtime: int16 activations
          const double ti = best_seconds(r, [&] { gemv_packed_i16(*pw, x.data(), y.data()); });
          row((name + " int16 act").c_str(), ti, bytes);
        }
      }
      // The integer GEMM alone on pre-quantized activations (what the oneDNN int8 row measures), then the fused call a
      // linear layer makes (per-token activation quantization included in the time).
      ActQuant a8, a4;
      {
        QuantizedRows q;
        quantize_rows(x.data(), M, a8, i8, q);
        row("catq W8A8 int GEMM (act. pre-quantized)", best_seconds(r, [&] { gemm_int(i8, q, y.data(), best_isa()); }),
            static_cast<double>(i8.w.q.size()) + 8.0 * i8.w.scale.size());
        quantize_rows(x.data(), M, a8, i4, q);
        row("catq W4A8 int GEMM (act. pre-quantized)", best_seconds(r, [&] { gemm_int(i4, q, y.data(), best_isa()); }),
            static_cast<double>(i4.w.q.size()) + 8.0 * i4.w.scale.size());
        // The same weights on the 64-column tile kernel (the path of CPUs without the 16-row layout), for comparison.
        for (const IntWeights* iw : {&i8, &i4}) {
          if (!iw->natural_order()) continue;
          IntWeights tiles = *iw;
          tiles.rows16.clear();
          quantize_rows(x.data(), M, a8, tiles, q);
          const std::string name = fmt::format("catq W{}A8 int GEMM, 64-column tiles (act. pre-quantized)", iw->w.bits);
          row(name.c_str(), best_seconds(r, [&] { gemm_int(tiles, q, y.data(), best_isa()); }),
              static_cast<double>(iw->w.q.size()) + 8.0 * iw->w.scale.size());
        }
      }
      a4.qmin = -8;
      a4.qmax = 7;
      for (auto [iw, aq, name] : {std::tuple{&i8, &a8, "catq W8A8 int (per-token act)"},
                                  std::tuple{&i4, &a8, "catq W4A8 int (per-token act)"},
                                  std::tuple{&i4, &a4, "catq W4A4 int (per-token act)"}}) {
        const double t = best_seconds(r, [&] { gemm_qact(*iw, x.data(), M, *aq, y.data()); });
        row(name, t, static_cast<double>(iw->w.q.size()) + 8.0 * iw->w.scale.size());
      }
    }
  }
  std::printf("\nThe int rows quantize the fp32 activations per token inside the timed call; the oneDNN int8 row gets "
              "already quantized u8 activations.\n");
  std::printf("vs = oneDNN time / catq time (> 1: catq faster). eff. GB/s = packed weight bytes (codes + scales + "
              "zero-points) / time; for M = 1 the GEMV is bandwidth-bound and %% of read BW is the figure of merit.\n");
  return 0;
}
