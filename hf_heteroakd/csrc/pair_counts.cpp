// One pass over two integer label maps: the histogram of their clamped (reference, prediction) value pairs.
// The CPU kernel behind MeanIoU(cpu_kernel="compiled"); see hf_heteroakd/pair_counts.py for the contract.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

namespace {

// Counts the pairs of refs[begin:end) and preds[begin:end) into histogram. Its arguments are values, not a
// lambda's captures: through a capture the compiler would reload every bound after each counter write.
template <typename scalar_t>
void count_range(const scalar_t* __restrict__ refs, const scalar_t* __restrict__ preds, int64_t begin, int64_t end,
                 int64_t ref_low, int64_t ref_high, int64_t pred_high, int64_t* __restrict__ histogram) {
  const int64_t width = pred_high + 2;  // predictions clamp to [-1, pred_high]
  const int64_t offset = 1 - ref_low * width;  // the bin of (ref, pred) is ref * width + pred + offset
  const uint64_t ref_span = ref_high - ref_low, pred_span = pred_high + 1;
  for (int64_t i = begin; i < end; ++i) {
    int64_t ref = static_cast<int64_t>(refs[i]), pred = static_cast<int64_t>(preds[i]);
    // Almost every pixel is in range: one well-predicted branch costs less than four conditional moves. Both
    // tests subtract in unsigned arithmetic, which wraps (a signed overflow would be undefined).
    const uint64_t ref_from_low = static_cast<uint64_t>(ref) - static_cast<uint64_t>(ref_low);
    const uint64_t pred_from_low = static_cast<uint64_t>(pred) + 1;
    if (__builtin_expect((ref_from_low > ref_span) | (pred_from_low > pred_span), 0)) {
      ref = std::clamp<int64_t>(ref, ref_low, ref_high);
      pred = std::clamp<int64_t>(pred, -1, pred_high);
    }
    ++histogram[ref * width + pred + offset];
  }
}

at::Tensor pair_counts(const at::Tensor& references, const at::Tensor& predictions, int64_t ref_low,
                       int64_t ref_high, int64_t pred_high) {
  TORCH_CHECK(references.device().is_cpu() && predictions.device().is_cpu(), "pair_counts runs on the CPU");
  TORCH_CHECK(references.scalar_type() == predictions.scalar_type(), "pair_counts: both maps need one dtype");
  TORCH_CHECK(references.numel() == predictions.numel(), "pair_counts: the maps differ in size");
  TORCH_CHECK(ref_low <= ref_high && pred_high >= 0, "pair_counts: empty clamping range");
  const at::Tensor refs = references.contiguous(), preds = predictions.contiguous();
  const int64_t bins = (ref_high - ref_low + 1) * (pred_high + 2), numel = refs.numel();
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), numel / (1 << 16)));
  at::Tensor counts = at::zeros({chunks, bins}, refs.options().dtype(at::kLong));
  int64_t* histograms = counts.mutable_data_ptr<int64_t>();
  AT_DISPATCH_INTEGRAL_TYPES(refs.scalar_type(), "pair_counts", [&] {
    const scalar_t* ref_data = refs.const_data_ptr<scalar_t>();
    const scalar_t* pred_data = preds.const_data_ptr<scalar_t>();
    // Each chunk counts into its own histogram, so that threads never write the same counter.
    at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
      for (int64_t chunk = first; chunk < last; ++chunk) {
        count_range<scalar_t>(ref_data, pred_data, numel * chunk / chunks, numel * (chunk + 1) / chunks, ref_low,
                              ref_high, pred_high, histograms + chunk * bins);
      }
    });
  });
  return counts.sum(0);
}

}  // namespace

TORCH_LIBRARY(hf_heteroakd, m) {
  m.def("pair_counts(Tensor references, Tensor predictions, int ref_low, int ref_high, int pred_high) -> Tensor");
  m.impl("pair_counts", c10::DispatchKey::CPU, TORCH_FN(pair_counts));
}
