#include "layers/attention_backend.h"

#ifdef HG_HAVE_CUDA
#include "layers/cuda/cudnn_attention.h"
#endif

namespace hg {

void set_attention_backend(AttentionBackend backend) {
#ifdef HG_HAVE_CUDA
  cuda::set_window_engine(backend == AttentionBackend::Cudnn   ? cuda::WindowEngine::Cudnn
                          : backend == AttentionBackend::Split ? cuda::WindowEngine::Kernel
                                                               : cuda::WindowEngine::None);
#else
  (void)backend;
#endif
}

std::string cudnn_attention_unavailable_reason() {
#ifdef HG_HAVE_CUDA
  return cuda::cudnn_unavailable_reason();
#else
  return "this build has no CUDA backend";
#endif
}

}  // namespace hg
