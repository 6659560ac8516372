// Subtraction2: out[n,c,j,i] = X~1[n,c,hc,wc] - X~2[n,c,hn_j,wn_j].
//
// grad1 is the centre term and grad2 minus the neighbour term of
// subtraction.cu, whose bodies this file reuses (it is concatenated after
// common.cuh and subtraction.cu).

template <typename T, typename I>
__global__ void sa_subtraction2_fwd(const T* __restrict__ x1,
                                    const T* __restrict__ x2,
                                    T* __restrict__ out, SA_GEOMETRY_PARAMS) {
  sa_subtraction_fwd_impl<T, I>(x1, x2, out, SA_GEOMETRY_ARGS);
}

template <typename T, typename I>
__global__ void sa_subtraction2_grad1(const T* __restrict__ grad_out,
                                      T* __restrict__ grad1,
                                      SA_GEOMETRY_PARAMS) {
  sa_subtraction_grad_impl<T, I>(grad_out, grad1, 1, 0, SA_GEOMETRY_ARGS);
}

template <typename T, typename I>
__global__ void sa_subtraction2_grad2(const T* __restrict__ grad_out,
                                      T* __restrict__ grad2,
                                      SA_GEOMETRY_PARAMS) {
  sa_subtraction_grad_impl<T, I>(grad_out, grad2, 0, 1, SA_GEOMETRY_ARGS);
}
