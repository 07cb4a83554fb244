// Learning-rate schedules as pure functions of the step, so a resumed run gets the same rates.
#include <cmath>

#include "diffusion/optim/optim.hpp"

namespace diffusion {

LrScheduleKind parse_lr_schedule(const std::string& name) {
  if (name == "constant") return LrScheduleKind::constant;
  if (name == "linear_warmup" || name == "warmup") return LrScheduleKind::linear_warmup;
  if (name == "cosine") return LrScheduleKind::cosine;
  throw Error("unknown learning-rate schedule '" + name +
              "'; choices: constant, cosine, linear_warmup (alias warmup)");
}

std::string to_string(LrScheduleKind kind) {
  switch (kind) {
    case LrScheduleKind::constant: return "constant";
    case LrScheduleKind::linear_warmup: return "linear_warmup";
    case LrScheduleKind::cosine: return "cosine";
  }
  return "?";
}

LrSchedule LrSchedule::constant(double base_lr) {
  LrSchedule s;
  s.base_lr = base_lr;
  s.validate();
  return s;
}

LrSchedule LrSchedule::linear_warmup(double base_lr, std::int64_t warmup_steps) {
  LrSchedule s;
  s.kind = LrScheduleKind::linear_warmup;
  s.base_lr = base_lr;
  s.warmup_steps = warmup_steps;
  s.validate();
  return s;
}

LrSchedule LrSchedule::cosine(double base_lr, std::int64_t total_steps, std::int64_t warmup_steps,
                              double min_lr) {
  LrSchedule s;
  s.kind = LrScheduleKind::cosine;
  s.base_lr = base_lr;
  s.total_steps = total_steps;
  s.warmup_steps = warmup_steps;
  s.min_lr = min_lr;
  s.validate();
  return s;
}

void LrSchedule::validate() const {
  const std::string who = "lr schedule '" + to_string(kind) + "': ";
  if (!(base_lr >= 0.0) || !std::isfinite(base_lr)) throw Error(who + "base_lr must be finite and >= 0");
  if (warmup_steps < 0) throw Error(who + "warmup_steps must be >= 0");
  if (kind == LrScheduleKind::linear_warmup && warmup_steps == 0)
    throw Error(who + "warmup_steps must be > 0");
  if (kind == LrScheduleKind::cosine) {
    if (total_steps <= warmup_steps)
      throw Error(who + "total_steps (" + std::to_string(total_steps) +
                  ") must exceed warmup_steps (" + std::to_string(warmup_steps) + ")");
    if (!(min_lr >= 0.0) || min_lr > base_lr) throw Error(who + "min_lr must lie in [0, base_lr]");
  }
}

double LrSchedule::lr_at(std::int64_t step) const {
  if (step < 0) throw Error("lr schedule: negative step " + std::to_string(step));
  if (step < warmup_steps) return base_lr * static_cast<double>(step) / static_cast<double>(warmup_steps);
  if (kind != LrScheduleKind::cosine) return base_lr;
  const double span = static_cast<double>(total_steps - warmup_steps);
  const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
  const double pi = std::acos(-1.0);
  return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(pi * progress));
}

}  // namespace diffusion
