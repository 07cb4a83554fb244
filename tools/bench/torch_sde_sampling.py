#!/usr/bin/python3
"""PyTorch + scipy baseline of the score-SDE samplers, for bench_sampling (tools/bench/).

The network is the one our side trained: its weights are read from the results file
bench_sampling writes (/model or /ema, PyTorch state_dict keys: net.layers.<i>.weight, ...,
time_embedding.W for Fourier features), and rebuilt in torch as plugins/mlp/time_mlp.cpp builds
it: MLP [x, time embedding of c_noise] -> hidden -> x's dimension, with the sinusoidal
(Transformer/DDPM: [sin(c f_k), cos(c f_k)], f_k = max_period^(-k/half)) or the Gaussian
Fourier embedding ([sin(2 pi c W), cos(2 pi c W)]), c_noise = time_scale * t. It predicts eps on
the VP SDE of Song et al. 2021 (eq. 11 and appendix B): beta(t) = beta_min + t (beta_max - beta_min),
B(t) = int_0^t beta, alpha = exp(-B/2), sigma = sqrt(1 - exp(-B)), score = -eps_hat / sigma.

Samplers, written as Song et al.'s released code (score_sde, sampling.py) writes them:
  ode  the probability-flow ODE dx/dt = f x - 1/2 g^2 score = -1/2 beta (x - eps_hat / sigma)
       (Song et al. 2021, eq. 13) with scipy.integrate.solve_ivp(method='RK45', rtol, atol) from
       t_max to t_min on the flattened batch (float64 state), the field calling the torch
       network under no_grad on float32 tensors; optionally one last denoising readout
       x0_hat = (x - sigma eps_hat) / alpha at t_min.
  pc   predictor-corrector (Song et al. 2021, section 4.2, algorithms 4-5) on the grid
       linspace(t_max, t_min, steps), as plugins/score_sde/pc_sampler.cpp runs it: at each time
       `corrector_steps` Langevin steps with signal-to-noise ratio snr, then one predictor step to
       the next time (none after the last); `denoise` ends with x0_hat at t_min (one more
       network evaluation).

The network's agreement with ours is checked first: /bench/check_x at time /bench.check_t must
give the velocity /bench/check_v (our probability-flow velocity), else the script fails.

Prints one JSON line per sampler: samples_per_s (n over the median seconds of `repeats` runs),
nfe, seconds, and the samples' mean and std (model coordinates) for a sanity check; the ODE's also
its accepted and rejected steps (of the last run).
  /usr/bin/python3 torch_sde_sampling.py --weights w.h5 --samplers ode,pc --threads 1
With --serve it answers one run per request line instead (bench_sampling interleaves them with
its own runs; see the end of this file), and a run may be stopped after a time limit.
"""
import argparse, json, math, os, statistics, sys, time

import h5py, numpy as np, scipy, torch, torch.nn as nn
from scipy.integrate import solve_ivp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "baselines"))
from torch_threads import set_threads  # noqa: E402  (PyTorch's threads and OpenBLAS's)

p = argparse.ArgumentParser()
p.add_argument("--weights", required=True, help="HDF5 file with the network under --group")
p.add_argument("--group", default="ema", help="model or ema")
p.add_argument("--samplers", default="ode,pc")
p.add_argument("--n", type=int, default=2000)
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--serve", action="store_true", help="answer bench_sampling's requests on stdin")
# the network
p.add_argument("--activation", default="silu", choices=["relu", "silu", "gelu", "tanh", "sigmoid"])
p.add_argument("--max-period", type=float, default=10000.0, help="sinusoidal embedding")
p.add_argument("--time-scale", type=float, default=1.0, help="c_noise = time_scale * t")
# the path
p.add_argument("--beta-min", type=float, default=0.1)
p.add_argument("--beta-max", type=float, default=20.0)
p.add_argument("--t-min", type=float, default=1e-3)
p.add_argument("--t-max", type=float, default=1.0)
# ode
p.add_argument("--rtol", type=float, default=1e-5)
p.add_argument("--atol", type=float, default=1e-5)
p.add_argument("--ode-denoise", type=int, default=0, choices=[0, 1])
# pc
p.add_argument("--pc-steps", type=int, default=1000)
p.add_argument("--predictor", default="reverse_diffusion",
               choices=["euler_maruyama", "reverse_diffusion", "ancestral", "none"])
p.add_argument("--ancestral-variance", default="posterior", choices=["posterior", "beta"])
p.add_argument("--corrector", default="langevin", choices=["langevin", "none"])
p.add_argument("--snr", type=float, default=0.16)
p.add_argument("--corrector-steps", type=int, default=1)
p.add_argument("--pc-denoise", type=int, default=1, choices=[0, 1])
a = p.parse_args()
set_threads(a.threads)

ACTIVATIONS = dict(relu=nn.ReLU, silu=nn.SiLU, gelu=nn.GELU, tanh=nn.Tanh, sigmoid=nn.Sigmoid)


class TimeMlp(nn.Module):
    """plugins/mlp/time_mlp.cpp with conditioning: concat, no classes."""

    def __init__(self, state):
        super().__init__()
        layers = sorted({int(k.split(".")[2]) for k in state if k.startswith("net.layers.")})
        if not layers:
            raise SystemExit(f"torch_sde_sampling: no net.layers.* in the weights: {sorted(state)}")
        mods = []
        for i in layers:
            w = state[f"net.layers.{i}.weight"]
            lin = nn.Linear(w.shape[1], w.shape[0])
            lin.weight.data.copy_(torch.from_numpy(w))
            lin.bias.data.copy_(torch.from_numpy(state[f"net.layers.{i}.bias"]))
            mods.append(lin)
            if i != layers[-1]:
                mods.append(ACTIVATIONS[a.activation]())
        self.net = nn.Sequential(*mods)
        self.dim = mods[-1].out_features
        emb_dim = mods[0].in_features - self.dim
        self.half = emb_dim // 2
        if "time_embedding.W" in state:
            self.register_buffer("W", torch.from_numpy(state["time_embedding.W"]))
        else:
            self.W = None
            self.register_buffer("freqs", torch.exp(
                -math.log(a.max_period) * torch.arange(self.half, dtype=torch.float64) / self.half).float())

    def forward(self, x, c_noise):
        ang = c_noise[:, None] * (self.W[None] * (2 * math.pi) if self.W is not None else self.freqs[None])
        return self.net(torch.cat([x, torch.sin(ang), torch.cos(ang)], 1))


with h5py.File(a.weights, "r") as f:
    state = {k: np.asarray(v, dtype=np.float32) for k, v in f[a.group].items()}
    check = f["bench"]
    check_x, check_v = np.asarray(check["check_x"]), np.asarray(check["check_v"])
    check_t = float(check.attrs["check_t"])
net = TimeMlp(state).eval()
D = net.dim


# ---- the VP SDE (Song et al. 2021, appendix B) ----
def beta(t):
    return a.beta_min + t * (a.beta_max - a.beta_min)


def big_b(t):
    return a.beta_min * t + 0.5 * (a.beta_max - a.beta_min) * t * t


def alpha(t):
    return math.exp(-0.5 * big_b(t))


def sigma(t):
    return math.sqrt(-math.expm1(-big_b(t)))


def eps_hat(x, t):
    return net(x, torch.full((x.shape[0],), a.time_scale * t, dtype=torch.float32))


def score(x, t):
    return eps_hat(x, t) / -sigma(t)


def pf_velocity(x, t):
    """f x - 1/2 g^2 score, with f = -beta/2, g^2 = beta."""
    b = beta(t)
    return -0.5 * b * x - 0.5 * b * score(x, t)


# ---- the same network as ours? ----
with torch.no_grad():
    v = pf_velocity(torch.from_numpy(check_x), check_t).numpy()
err = float(np.max(np.abs(v - check_v)) / max(1.0, float(np.max(np.abs(check_v)))))
if not err < 1e-4:
    raise SystemExit(f"torch_sde_sampling: the network disagrees with ours: velocity error {err:.3g} "
                     f"(ours {check_v[:2].tolist()}, torch {v[:2].tolist()})")


steps = {}  # the last ODE integration's accepted and rejected steps


# ---- probability-flow ODE with scipy (Song et al.'s ode_sampler) ----
def ode_sample(n, gen):
    x = torch.randn(n, D, generator=gen)

    def field(t, y):
        check_deadline()
        xt = torch.from_numpy(y.reshape(n, D)).to(torch.float32)
        with torch.no_grad():
            return pf_velocity(xt, t).numpy().reshape(-1)

    sol = solve_ivp(field, (a.t_max, a.t_min), x.numpy().reshape(-1), rtol=a.rtol, atol=a.atol, method="RK45")
    if sol.status != 0:
        raise SystemExit(f"torch_sde_sampling: solve_ivp failed: {sol.message}")
    nfe = sol.nfev
    # nfev = 2 (f(t0) and the starting step's probe) + 6 per attempted step, as ours counts.
    steps["accepted"] = len(sol.t) - 1
    steps["rejected"] = (sol.nfev - 2) // 6 - steps["accepted"]
    x = torch.from_numpy(sol.y[:, -1].reshape(n, D)).to(torch.float32)
    if a.ode_denoise:
        with torch.no_grad():
            x = (x - sigma(a.t_min) * eps_hat(x, a.t_min)) / alpha(a.t_min)
        nfe += 1
    return x, nfe


# ---- predictor-corrector (Song et al.'s pc_sampler, on the grid of plugins/score_sde/pc_sampler.cpp) ----
# The forward step from s to t < ... is x_t = a x_s + G z with a = alpha(t) / alpha(s) and
# G^2 = sigma(t)^2 - a^2 sigma(s)^2: on the VP SDE Song's discretize() has a = sqrt(1 - beta_i),
# G^2 = beta_i with beta_i from the discretised betas; here they are the path's exact values
# between the two grid times, as our sampler takes them.
def forward_step(t, s):
    a_ts = alpha(t) / alpha(s)
    return a_ts, sigma(t) ** 2 - a_ts ** 2 * sigma(s) ** 2


def predictor(x, t, s, gen):
    """x at t to x at s < t, a step of the reverse SDE dx = [f x - g^2 score] dt + g dw."""
    if a.predictor == "none":
        return x
    z = torch.randn(x.shape, generator=gen)
    if a.predictor == "euler_maruyama":
        b, dt = beta(t), s - t
        mean = x + (-0.5 * b * x - b * score(x, t)) * dt
        return mean + math.sqrt(b * (t - s)) * z
    a_ts, g2 = forward_step(t, s)
    if a.predictor == "reverse_diffusion":
        mean = x - ((a_ts - 1.0) * x - g2 * score(x, t))
        return mean + math.sqrt(g2) * z
    # ancestral: the Gaussian posterior q(x_s | x_t, x0_hat), its own variance or G^2 ("beta")
    x0 = (x - sigma(t) * eps_hat(x, t)) / alpha(t)
    st2, ss2 = sigma(t) ** 2, sigma(s) ** 2
    mean = (a_ts * ss2 / st2) * x + (alpha(s) * g2 / st2) * x0
    var = g2 if a.ancestral_variance == "beta" else g2 * ss2 / st2
    return mean + math.sqrt(var) * z


def corrector(x, t, s, gen):
    """Langevin steps at t with step 2 alpha_i (snr ||z|| / ||score||)^2 (Song's LangevinCorrector);
    alpha_i = a^2 of the forward step to the next time s (Song's 1 - beta_i), 1 at the last time."""
    if a.corrector == "none":
        return x
    alpha_i = forward_step(t, s)[0] ** 2 if s is not None else 1.0
    for _ in range(a.corrector_steps):
        grad = score(x, t)
        noise = torch.randn(x.shape, generator=gen)
        grad_norm = torch.linalg.norm(grad.reshape(grad.shape[0], -1), dim=-1).mean()
        noise_norm = torch.linalg.norm(noise.reshape(noise.shape[0], -1), dim=-1).mean()
        step = (a.snr * noise_norm / grad_norm) ** 2 * 2 * alpha_i
        x = x + step * grad + torch.sqrt(step * 2) * noise
    return x


@torch.no_grad()
def pc_sample(n, gen):
    """Corrector then predictor at each time of linspace(t_max, t_min, steps) (no predictor after
    the last), then, with denoise, x0_hat at t_min."""
    ts = np.linspace(a.t_max, a.t_min, a.pc_steps).tolist()
    x = torch.randn(n, D, generator=gen)
    for i, t in enumerate(ts):
        check_deadline()
        s = ts[i + 1] if i + 1 < len(ts) else None
        x = corrector(x, t, s, gen)
        if s is None:
            break
        x = predictor(x, t, s, gen)
    if a.pc_denoise:
        x = (x - sigma(a.t_min) * eps_hat(x, a.t_min)) / alpha(a.t_min)
    cs = a.corrector_steps if a.corrector != "none" else 0
    return x, len(ts) * cs + (len(ts) - 1) * (a.predictor != "none") + a.pc_denoise


class GaveUp(Exception):
    pass


deadline = math.inf  # perf_counter() time at which a run is stopped


def check_deadline():
    if time.perf_counter() > deadline:
        raise GaveUp


SAMPLERS = dict(ode=ode_sample, pc=pc_sample)
IMPL = f"pytorch-{torch.__version__}+scipy-{scipy.__version__}"


def run_once(name, repeat, limit=math.inf):
    """One run of a sampler from the stream of `repeat`, stopped after `limit` seconds; its JSON dict."""
    global deadline
    gen = torch.Generator().manual_seed(a.seed * 1000 + repeat)
    steps.clear()
    head = dict(impl=IMPL, sampler=name, threads=torch.get_num_threads(), repeat=repeat, n=a.n)
    t0 = time.perf_counter()
    deadline = t0 + limit
    try:
        x, nfe = SAMPLERS[name](a.n, gen)
    except GaveUp:
        # Slower than the limit: its samples/s is at most n / the time spent.
        secs = time.perf_counter() - t0
        return dict(head, gave_up=True, seconds=round(secs, 5), samples_per_s=round(a.n / secs, 2))
    secs = time.perf_counter() - t0
    S = x.numpy().astype(np.float64)
    return dict(head, seconds=round(secs, 5), samples_per_s=round(a.n / secs, 2), nfe=nfe,
                mean=S.mean(0).round(5).tolist(), std=S.std(0).round(5).tolist(), **steps)


if a.serve:
    # bench_sampling's protocol, so that its runs and ours alternate under the same load: one
    # request per line, "SAMPLER THREADS REPEAT LIMIT_SECONDS" (0: no limit), one JSON line each.
    print(json.dumps(dict(ready=True, impl=IMPL, check_error=err)), flush=True)
    for line in sys.stdin:
        name, threads, repeat, limit = line.split()
        set_threads(int(threads))
        print(json.dumps(run_once(name, int(repeat), float(limit) or math.inf)), flush=True)
else:
    for name in a.samplers.split(","):
        runs = [run_once(name, r) for r in range(a.repeats)]
        med = statistics.median(r["seconds"] for r in runs)
        last = {k: v for k, v in runs[-1].items() if k != "repeat"}
        print(json.dumps(dict(last, repeats=a.repeats, seconds=round(med, 5),
                              seconds_all=[r["seconds"] for r in runs], samples_per_s=round(a.n / med, 2),
                              nfe=statistics.median(r["nfe"] for r in runs), check_error=err)), flush=True)
