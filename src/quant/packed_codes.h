// The PACKED layout of integer codes, shared by every holder of catq's own codes (QuantizedWeight, the .catq file,
// the integer kernels, which read bits 2 / 4 / 8 in place): each code q is stored as the unsigned value u = q − lo in
// `bits` bits (1..16), least significant bit first, element after element, so n codes take ⌈n·bits/8⌉ bytes. With
// 4 bits the even element is the low nibble; with 2 bits element 4k sits in bits 0–1, 4k + 1 in bits 2–3, ...
#pragma once
#include <cstdint>

#include <ATen/ATen.h>

namespace catq {

// Packs codes [begin, begin + n) of `q` (flat, contiguous, any integer dtype) into out (⌈n·bits/8⌉ bytes, fully
// written); begin·bits must be a multiple of 8 when begin > 0. Error(Internal) naming the code when one lies outside
// [lo, lo + 2^bits − 1] (the range check is fused into the pack loop). Bits 8 / 4 / 2 / 1 go a byte at a time, other
// widths 8 codes (= `bits` bytes) per 64/128-bit word.
void pack_codes(const at::Tensor& q, int64_t begin, int64_t n, int bits, int64_t lo, uint8_t* out);
// q flattened to a contiguous CPU tensor of an integer dtype pack_codes takes (other dtypes become int64).
at::Tensor flat_codes(const at::Tensor& q);
// The inverse: n codes from ⌈n·bits/8⌉ bytes at p (never read past them) as int32 lo + v (wrapping as a cast).
void unpack_codes(const uint8_t* p, int64_t n, int bits, int64_t lo, int32_t* out);
// Bits a code range [qmin, qmax] needs: the smallest b with 2^b > qmax − qmin (1 for a single code).
int code_bits(int64_t qmin, int64_t qmax);

}  // namespace catq
