#include "layers/attention_backend.h"

#include <atomic>

#ifdef HG_HAVE_CUDA
#include "layers/cuda/cudnn_attention.h"
#endif

namespace hg {

namespace {
std::atomic<AttentionBackend> g_backend{AttentionBackend::Native};
}

void set_attention_backend(AttentionBackend backend) {
  g_backend.store(backend);
#ifdef HG_HAVE_CUDA
  cuda::set_window_engine(backend == AttentionBackend::Cudnn   ? cuda::WindowEngine::Cudnn
                          : backend == AttentionBackend::Split ? cuda::WindowEngine::Kernel
                                                               : cuda::WindowEngine::None);
#endif
}
AttentionBackend attention_backend() { return g_backend.load(); }

std::string cudnn_attention_unavailable_reason() {
#ifdef HG_HAVE_CUDA
  return cuda::cudnn_unavailable_reason();
#else
  return "this build has no CUDA backend";
#endif
}

}  // namespace hg
