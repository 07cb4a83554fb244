# Analysis of the smc experiments' results files: estimates against the closed forms, and the
# figure (particles with weights; ESS over time). /usr/bin/python3 tools/analysis/smc_report.py OUTDIR (reads results/smc_*.h5)
import sys, os, h5py, numpy as np
import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
out = sys.argv[1] if len(sys.argv) > 1 else "."
ang = np.arange(8) * np.pi / 4; ring = np.stack([2 * np.cos(ang), 2 * np.sin(ang)], 1)

def nearest(x, means):
    return np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), 1)

def weighted(g):
    x = g["particles"][()]; w = np.exp(g["log_weights"][()].astype(float)); w /= w.sum()
    return x, w

def report_inverse(path):
    f = h5py.File(path, "r"); s = f["samples"]
    sd, y, tau = 0.2, 1.0, 0.3
    lik = np.exp(-0.5 * (y - ring[:, 0]) ** 2 / (sd**2 + tau**2)) / np.sqrt(2 * np.pi * (sd**2 + tau**2))
    post = lik / 8; Z = post.sum(); post /= Z
    v = 1 / (1 / sd**2 + 1 / tau**2); pm = ring.copy(); pm[:, 0] = v * (ring[:, 0] / sd**2 + y / tau**2)
    print(f"inverse: exact weights {np.round(post, 4)} log Z {np.log(Z):.4f}")
    main = np.argsort(-post)[:2]
    for name in ["tds", "fk", "guidance"]:
        g = s[name]
        if "particles" in g:
            x, w = weighted(g); lz = float(g["log_normalizing_constant"][0])
            ess = g["ess"][()]; rt = g["resampling_times"][()]
            extra = f" log Z {lz:.4f} (exact {np.log(Z):.4f}); min ESS {ess.min():.0f}; resampled {len(rt)}x; nfe {g.attrs['nfe']}"
        else:
            x = g["x"][()]; w = np.full(len(x), 1 / len(x)); extra = f" nfe {g.attrs['nfe']}"
        lab = nearest(x, pm); frac = np.array([w[lab == k].sum() for k in range(8)])
        means = [np.round((w[lab == k, None] * x[lab == k]).sum(0) / max(frac[k], 1e-12), 3) for k in main]
        se = np.sqrt(post * (1 - post) / len(x))
        print(f"  {name}: weights {np.round(frac, 3)} (binomial SE at N: {np.round(se[main], 3)}) means of the two main "
              f"{means} (exact {[np.round(pm[k], 3) for k in main]}){extra}")
    return f

def report_product(path):
    f = h5py.File(path, "r"); s = f["samples"]
    sd, m, se_ = 0.2, np.array([1.5, 1.5]), 0.8
    lw = np.exp(-0.5 * ((ring - m) ** 2).sum(1) / (sd**2 + se_**2)) / (2 * np.pi * (sd**2 + se_**2))
    w = lw / 8; Z = w.sum(); w /= Z
    v = 1 / (1 / sd**2 + 1 / se_**2); pm = v * (ring / sd**2 + m / se_**2)
    print(f"product: exact weights {np.round(w, 4)} log Z {np.log(Z):.4f}")
    x, ww = weighted(s["product"]); lab = nearest(x, pm)
    frac = np.array([ww[lab == k].sum() for k in range(8)])
    print(f"  product: weights {np.round(frac, 3)} log Z {float(s['product']['log_normalizing_constant'][0]):.4f}; "
          f"std of the main component {np.round(np.sqrt((ww[lab==1,None]*(x[lab==1]-pm[1])**2).sum(0)/frac[1]),3)} (exact {np.sqrt(v):.3f}); "
          f"min ESS {s['product']['ess'][()].min():.0f}, resampled {len(s['product']['resampling_times'][()])}x")
    x, ww = weighted(s["annealed"]); lab = nearest(x, ring)
    frac = np.array([ww[lab == k].sum() for k in range(8)])
    stds = np.sqrt(np.array([(ww[lab == k, None] * (x[lab == k] - ring[k]) ** 2).sum(0) / frac[k] for k in range(8)]).mean(0))
    # int ring^2 = sum_k (1/8)^2 / (4 pi sd^2) (components well apart)
    print(f"  annealed (ring^2): weights {np.round(frac, 3)} (exact 0.125 each), within-component std {np.round(stds, 3)} "
          f"(exact {sd / np.sqrt(2):.3f}), log Z {float(s['annealed']['log_normalizing_constant'][0]):.4f} "
          f"(exact {np.log(8 * (1/8)**2 / (4 * np.pi * sd**2)):.4f}), min ESS {s['annealed']['ess'][()].min():.0f}")

def report_moons(path):
    f = h5py.File(path, "r"); s = f["samples"]
    for name in ["fk_difference", "fk_max", "plain"]:
        g = s[name]; x = g["x"][()]
        # upper moon: (cos a, sin a); lower: (1 - cos a, 0.5 - sin a): nearest curve
        a = np.linspace(0, np.pi, 400); up = np.stack([np.cos(a), np.sin(a)], 1); lo = np.stack([1 - np.cos(a), 0.5 - np.sin(a)], 1)
        du = ((x[:, None] - up[None]) ** 2).sum(-1).min(1); dl = ((x[:, None] - lo[None]) ** 2).sum(-1).min(1)
        extra = ""
        if "log_normalizing_constant" in g:
            extra = f", log Z {float(g['log_normalizing_constant'][0]):.3f}, min ESS {g['ess'][()].min():.0f}, resampled {len(g['resampling_times'][()])}x"
        print(f"  moons {name}: fraction on the upper moon {np.mean(du < dl):.3f}, mean y {x[:,1].mean():.3f}{extra}")

def figure(inv_path, out_png):
    f = h5py.File(inv_path, "r"); g = f["samples"]["tds"]
    x, w = weighted(g)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4.3))
    ref = f["samples"]["prior"]["x"][()]
    ax[0].scatter(ref[:, 0], ref[:, 1], s=3, c="0.8", label="prior samples (the model)")
    order = np.argsort(w)
    sc = ax[0].scatter(x[order, 0], x[order, 1], s=4 + 4000 * w[order], c=np.log10(w[order]), cmap="viridis", alpha=0.8,
                       label="TDS particles (size, colour: weight)")
    ax[0].axvline(1.0, color="tab:red", lw=1, ls="--", label="observed $x_0 = 1$ (noise 0.3)")
    ax[0].set_aspect("equal"); ax[0].legend(loc="lower left", fontsize=7); ax[0].set_title("smc_inverse_gaussians: TDS, N = 1000")
    plt.colorbar(sc, ax=ax[0], label="log10 weight")
    for name, col in [("tds", "tab:blue"), ("fk", "tab:orange")]:
        gg = f["samples"][name]; t = gg["ess_times"][()]; e = gg["ess"][()]
        ax[1].plot(t, e, color=col, lw=1, label=f"{name}: ESS")
        for rt in gg["resampling_times"][()]: ax[1].axvline(rt, color=col, lw=0.3, alpha=0.4)
    ax[1].axhline(500, color="0.5", ls=":", lw=1, label="threshold N/2")
    ax[1].set_xlabel("t (sampling runs from t = 1 to 0)"); ax[1].set_ylabel("effective sample size"); ax[1].invert_xaxis()
    ax[1].legend(fontsize=7); ax[1].set_title("ESS over time (thin lines: resampling)")
    fig.tight_layout(); fig.savefig(out_png, dpi=120); print("wrote", out_png)

if __name__ == "__main__":
    inv = "results/smc_inverse_gaussians.h5"
    if os.path.exists(inv): report_inverse(inv); figure(inv, os.path.join(out, "smc_inverse_gaussians.png"))
    if os.path.exists("results/smc_product_gaussians.h5"): report_product("results/smc_product_gaussians.h5")
    if os.path.exists("results/smc_moons.h5"): report_moons("results/smc_moons.h5")
