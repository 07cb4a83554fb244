// Speculative sampling of a diffusion model (De Bortoli, Galashov, Gretton & Doucet 2025,
// "Accelerated Diffusion Models via Speculative Sampling", Algorithm 1, with Algorithm 2's
// rejection step). The target chain is a Gaussian reverse kernel p_k = N(m_k(y_k), sd_k^2 I)
// (reverse_kernel.hpp) on a grid of S steps; a draft (draft.hpp) gives the kernel
// q_k = N(m_k^draft(y_k), sd_k^2 I). Each round, for every chain still running at its step n:
//
//   draft:   y~_n = y_n;  y~_{j+1} ~ q_j( . | y~_j)  for j = n .. n + L - 1   (L = lookahead)
//   verify:  the target's predictions at y~_n, ..., y~_{n+L-1}, all chains' windows in ONE
//            batched call, each row at its own time t_j
//   for j = n .. n + L - 1:
//            y_{j+1} = reflection_coupling(y~_{j+1}; p_j( . | y~_j), q_j( . | y~_j))
//            (y~_{j+1} kept with probability min(1, p_j / q_j), else the reflected point)
//            at the first rejection the chain moves to y_{j+1}, step j + 1, and the rest of
//            its window is dropped; when all L are accepted it moves to y~_{n+L}.
//
// Every y_{j+1} is distributed exactly as p_j( . | y_j) whatever the draft, so each chain is the
// target sampler's chain in law; a round advances it by 1 to L steps for one target call. The
// chains of a batch advance at their own pace, each window clipped at the grid's end; rounds go
// on until every chain has finished.
//
// The frozen target draft reads the target's last prediction on the chain (made at the state one
// step before the window starts), so it needs no call of its own; the chain's first step, which
// has no prediction before it, is the target's own step (one call for every chain).
//
// Cost, reported as extras: `target_calls` batched target calls (the run's `nfe` counts the
// same); `target_rows_per_sample` rows evaluated per chain (a window of L is L rows: the work
// done, as opposed to the calls waited for); `target_nfe` (N) the calls each chain took part
// in, its sequential NFE as a single sample would pay it, and its mean `target_nfe_mean`;
// `draft_nfe` batched draft-network calls (also nfe_<slot>); `acceptance_rate` (S) per step,
// accepted over verified proposals (NaN where none was verified), `proposals` (S) their count,
// `acceptance_mean` over every stochastic step; `wall_seconds` the sampler's own time.
//
// The chains move at different paces, so a trajectory holds only the starting draw and the result.
// Options: `lookahead` (L, default 4), `draft` (default {type: frozen_target, freeze: x0}),
// `kernel` (ancestral {variance: posterior | beta} or euler_maruyama; default ancestral),
// `steps`, `spacing`, `timesteps` (default: every step of a discrete path), `prior`.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include <diffusion/plugin.hpp>
#include <diffusion/plugin/sampler_options.hpp>

#include "batch_rows.hpp"
#include "draft.hpp"
#include "reflection_coupling.hpp"
#include "reverse_kernel.hpp"

namespace diffusion::speculative {
namespace {

/// The batch's chains: each row's state, the step it is at, and the target's last prediction.
struct Chains {
  Tensor x;
  RowIndex step;
  Prediction last;  ///< only for drafts that read it
};

/// What a run reports.
struct Counts {
  std::vector<double> proposed, accepted;  ///< per step
  std::vector<double> target_nfe;          ///< per chain
  std::size_t target_calls = 0, target_rows = 0, draft_calls = 0;
};

/// One round's drafts: the running chains (rows of the batch), each one's window length, and
/// per window position j the drafted state y~_{n+j} (j = 0..max length) and the draft's mean of
/// step n + j (j < max length); a row past its own window holds nothing meaningful.
struct Window {
  RowIndex chain, length;
  std::vector<Tensor, PoolAllocator<Tensor>> state, draft_mean;
};

Prediction gather_prediction(const Prediction& p, const RowIndex& rows) {
  return {gather_rows(p.x0, rows), gather_rows(p.eps, rows)};
}

/// The condition's rows for a batch gathered from the chains `rows` (empty stays empty).
Condition condition_rows(const Condition& c, const RowIndex& rows) {
  return c.empty() ? Condition{} : c.select(std::vector<std::size_t>(rows.begin(), rows.end()));
}

class SpeculativeSampler : public Sampler {
 public:
  SpeculativeSampler(GridOption grid, std::size_t lookahead, std::shared_ptr<const ReverseKernel> kernel,
                     std::shared_ptr<const Draft> draft, PriorDraw prior)
      : grid_(std::move(grid)), lookahead_(lookahead), kernel_(std::move(kernel)), draft_(std::move(draft)),
        prior_(prior) {}

  void check(const Path& path, const Source& source) const override {
    if (!source.standard_normal())
      throw Error("speculative: the " + kernel_->name() + " kernel reads a Gaussian path from the standard " +
                  "Gaussian source, not " + source.name());
    grid_.grid->times(path, resolve_steps(grid_.steps, path, "speculative"));
  }

  std::vector<std::string> required_models() const override { return draft_->required_models(); }

  SampleOutput sample(const Denoiser& target, const SampleRequest& req, Rng& rng) const override {
    const auto t0 = std::chrono::steady_clock::now();
    const Path& path = target.path();
    const std::size_t steps = resolve_steps(grid_.steps, path, "speculative");
    const std::vector<double> grid = grid_.grid->times(path, steps);
    const std::vector<GaussianStep> kernel = kernel_->steps(path, grid);
    const std::size_t n = req.shape[0];
    req.condition.check_rows(n, "speculative");

    Chains ch{req.source_or_default().start(path, req.shape, rng, prior_), RowIndex(n, 0), {}};
    if (req.trajectory) req.trajectory->record(ch.x, grid[0], 0, steps);
    Counts counts{std::vector<double>(steps, 0.0), std::vector<double>(steps, 0.0), std::vector<double>(n, 0.0)};
    if (draft_->needs_last_target_prediction()) target_first_step(target, req, kernel, grid, rng, ch, counts);
    for (;;) {
      const Window w = draft_window(target, req, kernel, grid, rng, ch, counts);
      if (w.chain.empty()) break;
      verify_window(target, req, kernel, grid, w, rng, ch, counts);
    }
    if (req.trajectory) req.trajectory->record(ch.x, path.t_min(), steps, steps);

    SampleOutput out;
    out.x = std::move(ch.x);
    report(counts, kernel, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), out);
    return out;
  }

 private:
  /// Step 0 by the target alone: the frozen draft has no prediction to freeze before it.
  void target_first_step(const Denoiser& target, const SampleRequest& req, const std::vector<GaussianStep>& kernel,
                         const std::vector<double>& grid, Rng& rng, Chains& ch, Counts& counts) const {
    target.predict(ch.x, grid[0], req.condition, ch.last);
    const Tensor z = rng.normal(shape_of(ch.x));
    const GaussianStep& k0 = kernel[0];
    for (std::size_t j = 0; j < ch.x.size(); ++j)
      ch.x.data()[j] = float(k0.mean(ch.x.data()[j], ch.last.x0.data()[j], ch.last.eps.data()[j]) + k0.sd * z.data()[j]);
    std::fill(ch.step.begin(), ch.step.end(), std::size_t(1));
    ++counts.target_calls, counts.target_rows += ch.step.size();
    for (double& c : counts.target_nfe) ++c;
  }

  /// The draft rolls every running chain out over its window: y~_{n+j+1} = m^draft + sd z.
  Window draft_window(const Denoiser& target, const SampleRequest& req, const std::vector<GaussianStep>& kernel,
                      const std::vector<double>& grid, Rng& rng, const Chains& ch, Counts& counts) const {
    const std::size_t steps = kernel.size();
    Window w;
    for (std::size_t i = 0; i < ch.step.size(); ++i)
      if (ch.step[i] < steps) w.chain.push_back(i), w.length.push_back(std::min(lookahead_, steps - ch.step[i]));
    if (w.chain.empty()) return w;
    const std::size_t na = w.chain.size(), longest = *std::max_element(w.length.begin(), w.length.end());
    const std::size_t per = row_size(ch.x);
    const bool reads_last = draft_->needs_last_target_prediction();
    const Prediction last = reads_last ? gather_prediction(ch.last, w.chain) : Prediction{};
    w.state.push_back(gather_rows(ch.x, w.chain));
    Prediction q;
    for (std::size_t j = 0; j < longest; ++j) {
      // The chains whose window reaches position j (all of them but near the grid's end).
      RowIndex rows, chains;
      for (std::size_t a = 0; a < na; ++a)
        if (w.length[a] > j) rows.push_back(a), chains.push_back(w.chain[a]);
      const bool all = rows.size() == na;
      Tensor y_rows;
      Prediction last_rows;
      if (!all) {
        y_rows = gather_rows(w.state[j], rows);
        if (reads_last) last_rows = gather_prediction(last, rows);
      }
      const Tensor& y = all ? w.state[j] : y_rows;
      Times t(rows.size());
      for (std::size_t r = 0; r < rows.size(); ++r) t[r] = grid[ch.step[chains[r]] + j];
      const Condition c = condition_rows(req.condition, chains);
      draft_->predict(target, req, y, t, c, all ? last : last_rows, q);
      if (draft_->evaluates_network()) ++counts.draft_calls;
      const Tensor z = rng.normal(shape_of(y));
      Tensor next = rows_like(ch.x, na), mean = rows_like(ch.x, na);
      for (std::size_t r = 0; r < rows.size(); ++r) {
        const GaussianStep& k = kernel[ch.step[chains[r]] + j];
        for (std::size_t e = r * per, to = rows[r] * per; e < (r + 1) * per; ++e, ++to) {
          const double m = k.mean(y.data()[e], q.x0.data()[e], q.eps.data()[e]);
          mean.data()[to] = float(m);
          next.data()[to] = float(m + k.sd * z.data()[e]);
        }
      }
      w.state.push_back(std::move(next));
      w.draft_mean.push_back(std::move(mean));
    }
    return w;
  }

  /// One batched target call on every window's states y~_n .. y~_{n+L-1} (row times t_n ..),
  /// then each chain's proposals in order, up to the first rejection.
  void verify_window(const Denoiser& target, const SampleRequest& req, const std::vector<GaussianStep>& kernel,
                     const std::vector<double>& grid, const Window& w, Rng& rng, Chains& ch, Counts& counts) const {
    const std::size_t na = w.chain.size(), per = row_size(ch.x);
    RowIndex first(na + 1, 0);
    for (std::size_t a = 0; a < na; ++a) first[a + 1] = first[a] + w.length[a];
    const std::size_t total = first[na];
    Tensor y = rows_like(ch.x, total);
    Times t(total);
    RowIndex chain_of(total);
    for (std::size_t a = 0; a < na; ++a)
      for (std::size_t j = 0; j < w.length[a]; ++j) {
        copy_row(w.state[j], a, y, first[a] + j);
        t[first[a] + j] = grid[ch.step[w.chain[a]] + j];
        chain_of[first[a] + j] = w.chain[a];
      }
    Prediction p;
    target.predict(y, t, condition_rows(req.condition, chain_of), p);
    ++counts.target_calls, counts.target_rows += total;

    const bool keeps_last = draft_->needs_last_target_prediction();
    std::vector<double, PoolAllocator<double>> m_p(per);
    std::vector<float, PoolAllocator<float>> out(per);
    for (std::size_t a = 0; a < na; ++a) {
      const std::size_t i = w.chain[a], n0 = ch.step[i];
      ++counts.target_nfe[i];
      std::size_t moved = w.length[a];  // steps this chain advances
      const float* result = w.state[moved].data() + a * per;
      for (std::size_t j = 0; j < w.length[a]; ++j) {
        const GaussianStep& k = kernel[n0 + j];
        const std::size_t r = first[a] + j;
        for (std::size_t e = 0; e < per; ++e)
          m_p[e] = k.mean(y.data()[r * per + e], p.x0.data()[r * per + e], p.eps.data()[r * per + e]);
        const bool accepted = reflection_coupling(w.state[j + 1].data() + a * per, w.draft_mean[j].data() + a * per,
                                                  m_p, k.sd, rng.uniform_double(), out.data(), per);
        ++counts.proposed[n0 + j];
        if (accepted) {
          ++counts.accepted[n0 + j];
          continue;
        }
        moved = j + 1, result = out.data();
        break;
      }
      std::copy_n(result, per, ch.x.data() + i * per);
      ch.step[i] = n0 + moved;
      if (keeps_last) {
        copy_row(p.x0, first[a] + moved - 1, ch.last.x0, i);
        copy_row(p.eps, first[a] + moved - 1, ch.last.eps, i);
      }
    }
  }

  void report(const Counts& counts, const std::vector<GaussianStep>& kernel, double seconds, SampleOutput& out) const {
    const std::size_t steps = kernel.size(), n = counts.target_nfe.size();
    Tensor rate = Tensor::from_shape({steps}), proposals = Tensor::from_shape({steps});
    double accepted = 0, proposed = 0;
    for (std::size_t k = 0; k < steps; ++k) {
      proposals(k) = float(counts.proposed[k]);
      rate(k) = counts.proposed[k] > 0 ? float(counts.accepted[k] / counts.proposed[k])
                                       : std::numeric_limits<float>::quiet_NaN();
      if (kernel[k].sd > 0) accepted += counts.accepted[k], proposed += counts.proposed[k];
    }
    Tensor per_chain = Tensor::from_shape({n});
    double nfe_sum = 0;
    for (std::size_t i = 0; i < n; ++i) per_chain(i) = float(counts.target_nfe[i]), nfe_sum += counts.target_nfe[i];
    out.add_extra("acceptance_rate", std::move(rate));
    out.add_extra("proposals", std::move(proposals));
    out.add_extra("acceptance_mean", scalar(float(proposed > 0 ? accepted / proposed : 0.0)));
    out.add_extra("target_calls", scalar(float(counts.target_calls)));
    out.add_extra("target_rows_per_sample", scalar(float(double(counts.target_rows) / double(n))));
    out.add_extra("target_nfe", std::move(per_chain));
    out.add_extra("target_nfe_mean", scalar(float(nfe_sum / double(n))));
    out.add_extra("draft_nfe", scalar(float(counts.draft_calls)));
    out.add_extra("wall_seconds", scalar(float(seconds)));
    for (const std::string& slot : draft_->required_models()) out.nfe[slot] = counts.draft_calls;
  }

  GridOption grid_;
  std::size_t lookahead_;
  std::shared_ptr<const ReverseKernel> kernel_;
  std::shared_ptr<const Draft> draft_;
  PriorDraw prior_;
};

std::shared_ptr<Sampler> make_speculative(const ConfigNode& c, const BuildContext& ctx) {
  GridOption grid = read_time_grid(c, 0, ctx);  // steps 0: every step of a discrete path
  const auto lookahead = static_cast<std::size_t>(c.get_int("lookahead", 4, 1, 1000));
  auto kernel = read_reverse_kernel(c, "kernel");
  auto draft = read_draft(c, "draft", ctx);
  return std::make_shared<SpeculativeSampler>(std::move(grid), lookahead, std::move(kernel), std::move(draft),
                                              read_prior_draw(c, ctx));
}

}  // namespace

DIFFUSION_REGISTER(samplers, "speculative", make_speculative);

}  // namespace diffusion::speculative
