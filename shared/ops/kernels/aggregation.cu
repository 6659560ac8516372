// Aggregation: y[n,c,i] = sum_j w[n, c mod Cw, j, i] * X~[n, c, hn_j, wn_j].
//
// x, grad_x: (N, C, H, W); w, grad_w: (N, Cw, K, L); y, grad_y:
// (N, C, Ho, Wo), K = kh*kw, L = Ho*Wo, slot j = a*kw + b, position
// i = ho*Wo + wo, hn = ho*sh - ph + a*dh. Needs common.cuh in front.

template <typename T, typename I>
__device__ __forceinline__ void sa_aggregation_fwd_impl(
    const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, I Cw,
    SA_GEOMETRY_PARAMS) {
  typedef typename sa_acc<T>::type A;
  const I K = kh * kw;
  const I L = Ho * Wo;
  const I total = N * C * L;
  SA_GRID_STRIDE_LOOP(I, idx, total) {
    const I i = idx % L;
    const I nc = idx / L;
    const I c = nc % C;
    const I n = nc / C;
    const I ho = i / Wo;
    const I wo = i % Wo;
    const T* xp = x + nc * H * W;
    const T* wp = w + (n * Cw + c % Cw) * K * L + i;
    A acc = 0;
    for (I a = 0; a < kh; ++a) {
      I hs;
      if (!sa_source<I>(ho * sh - ph + a * dh, H, reflect, &hs)) {
        continue;
      }
      for (I b = 0; b < kw; ++b) {
        I ws;
        if (!sa_source<I>(wo * sw - pw + b * dw, W, reflect, &ws)) {
          continue;
        }
        acc += sa_to_acc(wp[(a * kw + b) * L]) * sa_to_acc(xp[hs * W + ws]);
      }
    }
    y[idx] = sa_from_acc<T>(acc);
  }
}

// grad_x by gathering: one thread per input element sums, in a fixed order,
// over every (output position, slot) whose padded read lands on it,
// reflected reads included. Deterministic, no atomics.
template <typename T, typename I>
__device__ __forceinline__ void sa_aggregation_grad_input_impl(
    const T* __restrict__ grad_y, const T* __restrict__ w,
    T* __restrict__ grad_x, I Cw, SA_GEOMETRY_PARAMS) {
  typedef typename sa_acc<T>::type A;
  const I K = kh * kw;
  const I L = Ho * Wo;
  const I total = N * C * H * W;
  SA_GRID_STRIDE_LOOP(I, idx, total) {
    const I q = idx % W;
    const I t = idx / W;
    const I h = t % H;
    const I nc = t / H;
    const I c = nc % C;
    const I n = nc / C;
    const T* gyp = grad_y + nc * L;
    const T* wp = w + (n * Cw + c % Cw) * K * L;
    A acc = 0;
    for (int rc = 0; rc < 3; ++rc) {
      I r;
      if (!sa_fold_candidate<I>(h, H, ph, reflect, rc, &r)) {
        continue;
      }
      for (I a = 0; a < kh; ++a) {
        I ho;
        if (!sa_output_pos<I>(r, a, ph, dh, sh, Ho, &ho)) {
          continue;
        }
        for (int cc = 0; cc < 3; ++cc) {
          I u;
          if (!sa_fold_candidate<I>(q, W, pw, reflect, cc, &u)) {
            continue;
          }
          for (I b = 0; b < kw; ++b) {
            I wo;
            if (!sa_output_pos<I>(u, b, pw, dw, sw, Wo, &wo)) {
              continue;
            }
            const I i = ho * Wo + wo;
            acc += sa_to_acc(wp[(a * kw + b) * L + i]) * sa_to_acc(gyp[i]);
          }
        }
      }
    }
    grad_x[idx] = sa_from_acc<T>(acc);
  }
}

// grad_x by scattering with atomics (opt-in, not deterministic): one thread
// per grad_y element. grad_x_acc is a zero-filled (N, C, H, W) buffer of
// the accumulation type (float, or double for double) that the host casts
// back to T.
template <typename T, typename I>
__device__ __forceinline__ void sa_aggregation_grad_input_atomic_impl(
    const T* __restrict__ grad_y, const T* __restrict__ w,
    typename sa_acc<T>::type* __restrict__ grad_x_acc, I Cw,
    SA_GEOMETRY_PARAMS) {
  typedef typename sa_acc<T>::type A;
  const I K = kh * kw;
  const I L = Ho * Wo;
  const I total = N * C * L;
  SA_GRID_STRIDE_LOOP(I, idx, total) {
    const I i = idx % L;
    const I nc = idx / L;
    const I c = nc % C;
    const I n = nc / C;
    const I ho = i / Wo;
    const I wo = i % Wo;
    const A g = sa_to_acc(grad_y[idx]);
    const T* wp = w + (n * Cw + c % Cw) * K * L + i;
    A* gxp = grad_x_acc + nc * H * W;
    for (I a = 0; a < kh; ++a) {
      I hs;
      if (!sa_source<I>(ho * sh - ph + a * dh, H, reflect, &hs)) {
        continue;
      }
      for (I b = 0; b < kw; ++b) {
        I ws;
        if (!sa_source<I>(wo * sw - pw + b * dw, W, reflect, &ws)) {
          continue;
        }
        atomicAdd(gxp + hs * W + ws, sa_to_acc(wp[(a * kw + b) * L]) * g);
      }
    }
  }
}

// grad_w[n,g,j,i] = sum_{c = g mod Cw} X~[n,c,hn_j,wn_j] * grad_y[n,c,i];
// one thread per weight element, channels summed in increasing order.
template <typename T, typename I>
__device__ __forceinline__ void sa_aggregation_grad_weight_impl(
    const T* __restrict__ grad_y, const T* __restrict__ x,
    T* __restrict__ grad_w, I Cw, SA_GEOMETRY_PARAMS) {
  typedef typename sa_acc<T>::type A;
  const I K = kh * kw;
  const I L = Ho * Wo;
  const I total = N * Cw * K * L;
  SA_GRID_STRIDE_LOOP(I, idx, total) {
    const I i = idx % L;
    I t = idx / L;
    const I j = t % K;
    t /= K;
    const I g = t % Cw;
    const I n = t / Cw;
    const I ho = i / Wo;
    const I wo = i % Wo;
    I hs;
    I ws;
    A acc = 0;
    if (sa_source<I>(ho * sh - ph + (j / kw) * dh, H, reflect, &hs) &&
        sa_source<I>(wo * sw - pw + (j % kw) * dw, W, reflect, &ws)) {
      const T* xp = x + n * C * H * W + hs * W + ws;
      const T* gyp = grad_y + n * C * L + i;
      for (I c = g; c < C; c += Cw) {
        acc += sa_to_acc(xp[c * H * W]) * sa_to_acc(gyp[c * L]);
      }
    }
    grad_w[idx] = sa_from_acc<T>(acc);
  }
}

template <typename T, typename I>
__global__ void sa_aggregation_fwd(const T* __restrict__ x,
                                   const T* __restrict__ w,
                                   T* __restrict__ y, I Cw,
                                   SA_GEOMETRY_PARAMS) {
  sa_aggregation_fwd_impl<T, I>(x, w, y, Cw, SA_GEOMETRY_ARGS);
}

template <typename T, typename I>
__global__ void sa_aggregation_grad_input(const T* __restrict__ grad_y,
                                          const T* __restrict__ w,
                                          T* __restrict__ grad_x, I Cw,
                                          SA_GEOMETRY_PARAMS) {
  sa_aggregation_grad_input_impl<T, I>(grad_y, w, grad_x, Cw,
                                       SA_GEOMETRY_ARGS);
}

template <typename T, typename I>
__global__ void sa_aggregation_grad_input_atomic(
    const T* __restrict__ grad_y, const T* __restrict__ w,
    typename sa_acc<T>::type* __restrict__ grad_x_acc, I Cw,
    SA_GEOMETRY_PARAMS) {
  sa_aggregation_grad_input_atomic_impl<T, I>(grad_y, w, grad_x_acc, Cw,
                                              SA_GEOMETRY_ARGS);
}

template <typename T, typename I>
__global__ void sa_aggregation_grad_weight(const T* __restrict__ grad_y,
                                           const T* __restrict__ x,
                                           T* __restrict__ grad_w, I Cw,
                                           SA_GEOMETRY_PARAMS) {
  sa_aggregation_grad_weight_impl<T, I>(grad_y, x, grad_w, Cw,
                                        SA_GEOMETRY_ARGS);
}
