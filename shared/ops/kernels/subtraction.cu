// Subtraction: out[n,c,j,i] = X~[n,c,hc,wc] - X~[n,c,hn_j,wn_j].
//
// x, grad_x: (N, C, H, W); out, grad_out: (N, C, K, L). Centre
// hc = ho*sh - ph + ((kh-1)/2)*dh (= ho*sh under the 'same' padding the
// host enforces); neighbour hn = ho*sh - ph + a*dh. Both reads go through
// the padding rule, so an out-of-range neighbour in zero mode yields the
// centre. Needs common.cuh in front; subtraction2.cu reuses these bodies.

// One thread per output element; the centre is read from xc, the
// neighbour from xn (the same tensor for subtraction).
template <typename T, typename I>
__device__ __forceinline__ void sa_subtraction_fwd_impl(
    const T* __restrict__ xc, const T* __restrict__ xn, T* __restrict__ out,
    SA_GEOMETRY_PARAMS) {
  typedef typename sa_acc<T>::type A;
  const I K = kh * kw;
  const I L = Ho * Wo;
  const I total = N * C * K * L;
  SA_GRID_STRIDE_LOOP(I, idx, total) {
    const I i = idx % L;
    const I t = idx / L;
    const I j = t % K;
    const I nc = t / K;
    const I ho = i / Wo;
    const I wo = i % Wo;
    const I plane = nc * H * W;
    I hs;
    I ws;
    A centre = 0;
    if (sa_source<I>(ho * sh - ph + ((kh - 1) / 2) * dh, H, reflect, &hs) &&
        sa_source<I>(wo * sw - pw + ((kw - 1) / 2) * dw, W, reflect, &ws)) {
      centre = sa_to_acc(xc[plane + hs * W + ws]);
    }
    A neighbour = 0;
    if (sa_source<I>(ho * sh - ph + (j / kw) * dh, H, reflect, &hs) &&
        sa_source<I>(wo * sw - pw + (j % kw) * dw, W, reflect, &ws)) {
      neighbour = sa_to_acc(xn[plane + hs * W + ws]);
    }
    out[idx] = sa_from_acc<T>(centre - neighbour);
  }
}

// Centre term of the gradient at pixel (h, q) of one (n, c) plane:
// sum over all slots j of g[j, i] at every output position i whose centre
// reads (h, q). gp points at the plane's (K, L) block.
template <typename T, typename I>
__device__ __forceinline__ typename sa_acc<T>::type sa_centre_grad(
    const T* __restrict__ gp, I h, I q, SA_GEOMETRY_PARAMS) {
  typedef typename sa_acc<T>::type A;
  const I K = kh * kw;
  const I L = Ho * Wo;
  A acc = 0;
  for (int rc = 0; rc < 3; ++rc) {
    I r;
    I ho;
    if (!sa_fold_candidate<I>(h, H, ph, reflect, rc, &r) ||
        !sa_output_pos<I>(r, (kh - 1) / 2, ph, dh, sh, Ho, &ho)) {
      continue;
    }
    for (int cc = 0; cc < 3; ++cc) {
      I u;
      I wo;
      if (!sa_fold_candidate<I>(q, W, pw, reflect, cc, &u) ||
          !sa_output_pos<I>(u, (kw - 1) / 2, pw, dw, sw, Wo, &wo)) {
        continue;
      }
      const T* g = gp + ho * Wo + wo;
      for (I j = 0; j < K; ++j) {
        acc += sa_to_acc(g[j * L]);
      }
    }
  }
  return acc;
}

// Neighbour term at pixel (h, q): sum of g[j, i] over every (slot j,
// position i) whose padded neighbour read lands on (h, q), reflected reads
// included (the reflect fold).
template <typename T, typename I>
__device__ __forceinline__ typename sa_acc<T>::type sa_neighbour_grad(
    const T* __restrict__ gp, I h, I q, SA_GEOMETRY_PARAMS) {
  typedef typename sa_acc<T>::type A;
  const I L = Ho * Wo;
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
          acc += sa_to_acc(gp[(a * kw + b) * L + ho * Wo + wo]);
        }
      }
    }
  }
  return acc;
}

// Gradient gather, one thread per input element:
// grad = centre_sign * centre term - neighbour_sign * neighbour term, with
// each sign 0 or 1 (a zero sign skips that term).
template <typename T, typename I>
__device__ __forceinline__ void sa_subtraction_grad_impl(
    const T* __restrict__ grad_out, T* __restrict__ grad_x, int centre_sign,
    int neighbour_sign, SA_GEOMETRY_PARAMS) {
  typedef typename sa_acc<T>::type A;
  const I K = kh * kw;
  const I L = Ho * Wo;
  const I total = N * C * H * W;
  SA_GRID_STRIDE_LOOP(I, idx, total) {
    const I q = idx % W;
    const I t = idx / W;
    const I h = t % H;
    const I nc = t / H;
    const T* gp = grad_out + nc * K * L;
    A acc = 0;
    if (centre_sign) {
      acc += sa_centre_grad<T, I>(gp, h, q, SA_GEOMETRY_ARGS);
    }
    if (neighbour_sign) {
      acc -= sa_neighbour_grad<T, I>(gp, h, q, SA_GEOMETRY_ARGS);
    }
    grad_x[idx] = sa_from_acc<T>(acc);
  }
}

template <typename T, typename I>
__global__ void sa_subtraction_fwd(const T* __restrict__ x,
                                   T* __restrict__ out, SA_GEOMETRY_PARAMS) {
  sa_subtraction_fwd_impl<T, I>(x, x, out, SA_GEOMETRY_ARGS);
}

template <typename T, typename I>
__global__ void sa_subtraction_grad(const T* __restrict__ grad_out,
                                    T* __restrict__ grad_x,
                                    SA_GEOMETRY_PARAMS) {
  sa_subtraction_grad_impl<T, I>(grad_out, grad_x, 1, 1, SA_GEOMETRY_ARGS);
}
