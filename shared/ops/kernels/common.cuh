// Shared definitions for the SAN self-attention kernels.
//
// shared/ops/compile.py prepends this text to aggregation.cu,
// subtraction.cu and subtraction2.cu; NVRTC gets one translation unit and
// no include path. Nothing here includes a toolkit header: half and
// bfloat16 are 16-bit structs converted with inline PTX / bit operations.
//
// Conventions of every kernel:
//   * template <typename T, typename I>: T is the storage type (float,
//     double, sa_half, sa_bf16), I the index type (int or long long). The
//     host picks long long when a count or offset could exceed 2^31 - 1.
//   * sums run in sa_acc<T>::type: float, or double for double.
//   * sizes, hyper-parameters and the pad mode are kernel arguments; nothing
//     shape-dependent is compiled in.
//   * 1-D grid-stride loops; any grid size is correct.
//   * reflect != 0 selects ReflectionPad2d semantics, 0 zero padding.

struct sa_half {
  unsigned short bits;
};

struct sa_bf16 {
  unsigned short bits;
};

template <typename T>
struct sa_acc {
  typedef float type;
};

template <>
struct sa_acc<double> {
  typedef double type;
};

// ---- conversions ----------------------------------------------------------

__device__ __forceinline__ float sa_to_acc(float v) { return v; }

__device__ __forceinline__ double sa_to_acc(double v) { return v; }

__device__ __forceinline__ float sa_to_acc(sa_half v) {
#if defined(__CUDA_ARCH__)
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
  return f;
#else
  return sa_host_half_to_float(v.bits);  // host test harness only
#endif
}

__device__ __forceinline__ float sa_to_acc(sa_bf16 v) {
  return __uint_as_float(((unsigned int)v.bits) << 16);
}

template <typename T>
__device__ __forceinline__ T sa_from_acc(typename sa_acc<T>::type v);

template <>
__device__ __forceinline__ float sa_from_acc<float>(float v) {
  return v;
}

template <>
__device__ __forceinline__ double sa_from_acc<double>(double v) {
  return v;
}

template <>
__device__ __forceinline__ sa_half sa_from_acc<sa_half>(float v) {
  sa_half h;
#if defined(__CUDA_ARCH__)
  unsigned short bits;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(v));
  h.bits = bits;
#else
  h.bits = sa_host_float_to_half(v);  // host test harness only
#endif
  return h;
}

template <>
__device__ __forceinline__ sa_bf16 sa_from_acc<sa_bf16>(float v) {
  // Round to nearest even; NaN stays a (quiet) NaN with its sign.
  unsigned int u = __float_as_uint(v);
  sa_bf16 b;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    b.bits = (unsigned short)((u >> 16) | 0x0040u);
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);
    b.bits = (unsigned short)(u >> 16);
  }
  return b;
}

// ---- geometry ---------------------------------------------------------------

// Padded read X~: maps a window coordinate hn (which lies in [-p, H-1+p],
// p < H in reflect mode) to the pixel it reads. Returns false when the read
// is a zero-padding zero.
template <typename I>
__device__ __forceinline__ bool sa_source(I hn, I H, int reflect, I* src) {
  if (hn >= 0 && hn < H) {
    *src = hn;
    return true;
  }
  if (!reflect) {
    return false;
  }
  *src = hn < 0 ? -hn : 2 * (H - 1) - hn;
  return true;
}

// Inverse of sa_source: the which-th (0..2) window coordinate that reads
// pixel h. 0: h itself; reflect mode adds -h (top/left padding, for
// 1 <= h <= p) and 2(H-1)-h (bottom/right padding, for H-1-p <= h <= H-2).
// This is the reflect gradient fold, done inside the gather.
template <typename I>
__device__ __forceinline__ bool sa_fold_candidate(I h, I H, I p, int reflect,
                                                  int which, I* r) {
  if (which == 0) {
    *r = h;
    return true;
  }
  if (!reflect) {
    return false;
  }
  if (which == 1) {
    if (h < 1 || h > p) {
      return false;
    }
    *r = -h;
    return true;
  }
  if (h > H - 2 || h < H - 1 - p) {
    return false;
  }
  *r = 2 * (H - 1) - h;
  return true;
}

// Output position o with o*s - p + a*d == r, if any (0 <= o < O).
template <typename I>
__device__ __forceinline__ bool sa_output_pos(I r, I a, I p, I d, I s, I O,
                                              I* o) {
  const I t = r + p - a * d;
  if (t < 0 || t % s != 0) {
    return false;
  }
  *o = t / s;
  return *o < O;
}

#define SA_GRID_STRIDE_LOOP(I, idx, total)                            \
  for (I idx = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x;        \
       idx < (total); idx += (I)blockDim.x * (I)gridDim.x)

// The argument list every kernel shares after its pointers (Cw only in the
// aggregation kernels).
#define SA_GEOMETRY_PARAMS                                                   \
  I N, I C, I H, I W, I Ho, I Wo, I kh, I kw, I sh, I sw, I ph, I pw, I dh, \
      I dw, int reflect

#define SA_GEOMETRY_ARGS \
  N, C, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, reflect
