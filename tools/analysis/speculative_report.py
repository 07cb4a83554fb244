# Figure for the README: acceptance rate per step (frozen target draft, L = 2, 4, 8, and eps frozen)
# and the samples of plain vs speculative (L = 8), from one results file of speculative_moons.yaml.
import sys, h5py, numpy as np
import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
h = h5py.File(sys.argv[1], 'r'); out = sys.argv[2]
fig, ax = plt.subplots(1, 2, figsize=(11, 4))
t = np.linspace(999, 0, 200)  # the 200-step linear grid of the DDPM path
for s, c in [('spec_L2', 'C0'), ('spec_L4', 'C1'), ('spec_L8', 'C2'), ('spec_L4_eps', 'C3')]:
    g = h['samples'][s]; r = g['acceptance_rate'][()]
    ax[0].plot(t[:-1], r[:-1], c, lw=1, label='%s (%d target calls, acceptance %.3f)' % (s, g.attrs['nfe'], g['acceptance_mean'][()]))
ax[0].set_xlabel('DDPM step t (sampling runs right to left)'); ax[0].set_ylabel('accepted / verified proposals')
ax[0].invert_xaxis(); ax[0].set_ylim(0.5, 1.01); ax[0].legend(fontsize=7, loc='lower left')
ax[0].set_title('acceptance per step (plain ancestral: 200 calls)', fontsize=9)
ref = h['data/reference'][()]
ax[1].scatter(ref[:, 0], ref[:, 1], s=1, c='0.8', label='reference')
for s, c in [('plain', 'C0'), ('spec_L8', 'C2')]:
    x = h['samples'][s]['x'][()][:1000]; w = h['metrics'][s]['w2']
    ax[1].scatter(x[:, 0], x[:, 1], s=1, c=c, label='%s: W2 %.3f +- %.3f, %d calls' % (s, w[()], w.attrs['std'], h['samples'][s].attrs['nfe']))
ax[1].legend(fontsize=7, markerscale=5); ax[1].set_aspect('equal'); ax[1].set_title('samples (1000 of 2000 shown)', fontsize=9)
fig.tight_layout(); fig.savefig(out, dpi=110)
