# Figure for the README: the labelled eight Gaussians and classifier-free guided samples at w = 0, 1, 2, 4,
# coloured by the requested class. usage: /usr/bin/python3 tools/analysis/guidance_report.py results/cfg_gaussians.h5 docs/images/cfg_gaussians.png
import sys, h5py, matplotlib
matplotlib.use('Agg'); import matplotlib.pyplot as plt
f = h5py.File(sys.argv[1], 'r')
panels = [('data', 'data (reference)')] + [('w%d' % w, 'w = %d' % w) for w in (0, 1, 2, 4)]
fig, axes = plt.subplots(1, 5, figsize=(17, 4.0), sharex=True, sharey=True)
cmap = plt.get_cmap('tab10')
for ax, (g, title) in zip(axes, panels):
    if g == 'data':
        x, l = f['data/reference'][:], f['data/reference_labels'][:]
        title += '\nin class %.3f (floor), class W2 %.2f' % (float(f['metrics/data/class_fraction'][()]), float(f['metrics/data/class_w2'][()]))
    else:
        x, l = f['samples/%s/x' % g][:], f['samples/%s/labels' % g][:].astype(int)
        title += '\nin class %.3f, class W2 %.2f' % (float(f['metrics/%s/class_fraction' % g][()]), float(f['metrics/%s/class_w2' % g][()]))
    ax.scatter(x[:, 0], x[:, 1], s=2, c=[cmap(int(k)) for k in l], alpha=0.6)
    ax.set_title(title, fontsize=10); ax.set_aspect('equal')
ax.set_xlim(-4.5, 4.5); ax.set_ylim(-4.5, 4.5)
fig.suptitle('classifier-free guidance on the labelled eight Gaussians (cfg_gaussians, seed 0): samples coloured by the requested class', fontsize=11)
fig.tight_layout(rect=[0, 0, 1, 0.92]); fig.savefig(sys.argv[2], dpi=90)
