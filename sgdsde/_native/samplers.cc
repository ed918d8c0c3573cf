// Native CPU kernels for sgdsde's samplers without replacement (sgdsde/sampling.py).
//
// Each kernel computes exactly what the pure-JAX sampler computes, bit for bit (the same
// Threefry-2x32 blocks, the same bounded draws, the same deduplication or swaps), one replica
// at a time with scalar code instead of vectorised gathers and scatters across replicas,
// which XLA's CPU backend runs slowly. sgdsde/_native/__init__.py compiles this file once
// per machine and registers the kernels as XLA FFI targets; tests/test_native.py checks
// the equality with the JAX path.

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

inline uint32_t rotl(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

// Threefry-2x32, 20 rounds, as sgdsde/_threefry.py:_threefry2x32 (and jax._src.prng).
inline void threefry2x32(uint32_t k0, uint32_t k1, uint32_t& x0, uint32_t& x1) {
  static const int rotations[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  const uint32_t ks[3] = {k0, k1, k0 ^ k1 ^ 0x1BD11BDAu};
  x0 += ks[0];
  x1 += ks[1];
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < 4; ++j) {
      x0 += x1;
      x1 = x0 ^ rotl(x1, rotations[i % 2][j]);
    }
    x0 += ks[(i + 1) % 3];
    x1 += ks[(i + 2) % 3] + static_cast<uint32_t>(i + 1);
  }
}

// sgdsde/_threefry.py:uniform_below for one counter: floor(x * span / 2^64), x the 64 bits
// (x_hi, x_lo) of the Threefry block of (0, counter).
inline uint32_t uniform_below(uint32_t k0, uint32_t k1, uint32_t counter, uint32_t span) {
  uint32_t hi = 0, lo = counter;
  threefry2x32(k0, k1, hi, lo);
  const uint64_t x = (static_cast<uint64_t>(hi) << 32) | lo;
  return static_cast<uint32_t>((static_cast<unsigned __int128>(x) * span) >> 64);
}

// Runs body(begin, end) over contiguous ranges of [0, count), one range per thread of XLA's
// CPU thread pool (ranges of at least 16 rows; the calling thread runs the first).
template <typename Body>
void parallel_ranges(ffi::ThreadPool& pool, int64_t count, Body body) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), count / 16));
  if (threads <= 1) {
    body(int64_t{0}, count);
    return;
  }
  std::mutex mutex;
  std::condition_variable done;
  int64_t remaining = threads - 1;
  for (int64_t t = 1; t < threads; ++t) {
    pool.Schedule([&, t] {
      body(count * t / threads, count * (t + 1) / threads);
      std::lock_guard<std::mutex> lock(mutex);
      if (--remaining == 0) done.notify_one();
    });
  }
  body(int64_t{0}, count / threads);
  std::unique_lock<std::mutex> lock(mutex);
  done.wait(lock, [&] { return remaining == 0; });
}

constexpr int kChunk = 32;  // stream draws computed ahead at a time (a loop the compiler vectorises)

// Subset sampler: for each key, the first max_size distinct values of the stream
// c_t = uniform_below(key, t, N), t = 0, 1, 2, ... (sampling.py:_subset_draw).
ffi::Error SubsetImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::U32> keys, ffi::ResultBuffer<ffi::S32> out,
                      int64_t num_examples, int64_t max_size) {
  const int64_t count = keys.element_count() / 2;
  if (out->element_count() != count * max_size) return ffi::Error::InvalidArgument("subset: output shape");
  if (max_size > num_examples || num_examples < 1 || num_examples > (int64_t{1} << 31))
    return ffi::Error::InvalidArgument("subset: need 1 <= max_size <= N < 2^31");
  const uint32_t* key = keys.typed_data();
  int32_t* result = out->typed_data();
  const uint32_t span = static_cast<uint32_t>(num_examples);
  const int64_t words = (num_examples + 63) / 64;
  // one bitset per range (ranges run on different threads)
  auto run_range = [&](int64_t begin, int64_t end) {
    std::vector<uint64_t> seen(words, 0);
    uint32_t draws[kChunk];
    for (int64_t r = begin; r < end; ++r) {
      const uint32_t k0 = key[2 * r], k1 = key[2 * r + 1];
      int32_t* row = result + r * max_size;
      int64_t found = 0;
      uint32_t t = 0;
      while (found < max_size) {
        // as many draws as values still missing (at most kChunk): no draw is wasted when N >> S
        const int want = static_cast<int>(std::min<int64_t>(kChunk, max_size - found));
        for (int j = 0; j < want; ++j) draws[j] = uniform_below(k0, k1, t + static_cast<uint32_t>(j), span);
        t += static_cast<uint32_t>(want);
        for (int j = 0; j < want && found < max_size; ++j) {
          const uint32_t v = draws[j];
          const uint64_t bit = uint64_t{1} << (v & 63);
          uint64_t& word = seen[v >> 6];
          if (!(word & bit)) {
            word |= bit;
            row[found++] = static_cast<int32_t>(v);
          }
        }
      }
      for (int64_t i = 0; i < max_size; ++i) seen[row[i] >> 6] = 0;  // clear only what was set
    }
  };
  parallel_ranges(pool, count, run_range);
  return ffi::Error::Success();
}

// Epoch sampler (random reshuffling), one step for each replica (sampling.py:_epoch_draw):
// position <- 0 if position + S > N; slot p = position + i swapped with p + u_i, u_i =
// uniform_below(key, i, max(N - p, 1)), for i < S (in order); indices[i] = order[min(p, N-1)]
// for every i < max_size after the swaps; position <- position + S. ``order`` is updated in
// place (aliased).
template <typename T>
ffi::Error EpochImpl(ffi::ThreadPool pool, const uint32_t* key, const T* order_in, const int32_t* position_in,
                     const int32_t* batch_size, int32_t* indices, T* order, int32_t* position_out, int64_t count,
                     int64_t num_examples, int64_t max_size) {
  const int64_t n = num_examples;
  // Each swap is a random access into a row of N entries, and the R rows together are far
  // larger than the caches (1 GB at R = 1e4, N = 5e4), so a swap waits on memory. The
  // partners of replica r + kAhead are drawn and their cache lines prefetched while replica
  // r swaps (batches up to kPipelined; larger ones prefetch kChunk partners ahead within
  // the replica), so that many misses are in flight at once.
  constexpr int64_t kAhead = 8, kPipelined = 64;
  struct Plan {
    int64_t start, size;
    int64_t partners[kPipelined];
  };
  auto partner = [&](uint32_t k0, uint32_t k1, int64_t start, int64_t i) {
    const int64_t slot = start + i;
    const uint32_t span = static_cast<uint32_t>(std::max<int64_t>(n - slot, 1));
    return slot + static_cast<int64_t>(uniform_below(k0, k1, static_cast<uint32_t>(i), span));
  };
  auto plan = [&](int64_t r, Plan& p) {
    T* row = order + r * n;
    if (row != order_in + r * n) std::copy(order_in + r * n, order_in + (r + 1) * n, row);
    p.size = batch_size[r];
    p.start = (int64_t{position_in[r]} + p.size > n) ? 0 : position_in[r];
    if (p.size > kPipelined) return;
    const int64_t per_line = 64 / static_cast<int64_t>(sizeof(T));
    for (int64_t i = 0; i < p.size; i += per_line) __builtin_prefetch(row + p.start + i, 1);
    for (int64_t i = 0; i < p.size; ++i) {
      p.partners[i] = partner(key[2 * r], key[2 * r + 1], p.start, i);
      __builtin_prefetch(row + p.partners[i], 1);
    }
  };
  auto finish = [&](int64_t r, const Plan& p) {
    T* row = order + r * n;
    if (p.size <= kPipelined) {
      for (int64_t i = 0; i < p.size; ++i) std::swap(row[p.start + i], row[p.partners[i]]);
    } else {
      int64_t ahead[kChunk];
      for (int64_t base = 0; base < p.size; base += kChunk) {
        const int64_t stop = std::min<int64_t>(p.size, base + kChunk);
        for (int64_t i = base; i < stop; ++i) {
          ahead[i - base] = partner(key[2 * r], key[2 * r + 1], p.start, i);
          __builtin_prefetch(row + ahead[i - base], 1);
        }
        for (int64_t i = base; i < stop; ++i) std::swap(row[p.start + i], row[ahead[i - base]]);
      }
    }
    int32_t* out = indices + r * max_size;
    for (int64_t i = 0; i < max_size; ++i) out[i] = static_cast<int32_t>(row[std::min<int64_t>(p.start + i, n - 1)]);
    position_out[r] = static_cast<int32_t>(p.start + p.size);
  };
  parallel_ranges(pool, count, [&](int64_t begin, int64_t end) {
    Plan plans[kAhead];
    for (int64_t r = begin; r < std::min(end, begin + kAhead); ++r) plan(r, plans[(r - begin) % kAhead]);
    for (int64_t r = begin; r < end; ++r) {
      Plan& p = plans[(r - begin) % kAhead];
      finish(r, p);
      if (r + kAhead < end) plan(r + kAhead, p);
    }
  });
  return ffi::Error::Success();
}

ffi::Error EpochDispatch(ffi::ThreadPool pool, ffi::Buffer<ffi::U32> keys, ffi::AnyBuffer order_in,
                         ffi::Buffer<ffi::S32> position_in, ffi::Buffer<ffi::S32> batch_size,
                         ffi::Result<ffi::Buffer<ffi::S32>> indices, ffi::Result<ffi::AnyBuffer> order,
                         ffi::Result<ffi::Buffer<ffi::S32>> position_out, int64_t num_examples, int64_t max_size) {
  const int64_t count = keys.element_count() / 2;
  if (order_in.element_count() != count * num_examples || position_in.element_count() != count ||
      batch_size.element_count() != count || indices->element_count() != count * max_size)
    return ffi::Error::InvalidArgument("epoch: shapes");
  if (order_in.element_type() == ffi::DataType::U16)
    return EpochImpl<uint16_t>(pool, keys.typed_data(), order_in.typed_data<uint16_t>(), position_in.typed_data(),
                               batch_size.typed_data(), indices->typed_data(), order->typed_data<uint16_t>(),
                               position_out->typed_data(), count, num_examples, max_size);
  if (order_in.element_type() == ffi::DataType::S32)
    return EpochImpl<int32_t>(pool, keys.typed_data(), order_in.typed_data<int32_t>(), position_in.typed_data(),
                              batch_size.typed_data(), indices->typed_data(), order->typed_data<int32_t>(),
                              position_out->typed_data(), count, num_examples, max_size);
  return ffi::Error::InvalidArgument("epoch: order must be uint16 or int32");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(SgdsdeSubsetDraw, SubsetImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("num_examples")
                                  .Attr<int64_t>("max_size"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(SgdsdeEpochDraw, EpochDispatch,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("num_examples")
                                  .Attr<int64_t>("max_size"));
