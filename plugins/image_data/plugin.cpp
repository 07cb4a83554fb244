// Image data sets: Fashion-MNIST and MNIST (IDX files), scikit-learn's 8x8 digits and a user's
// HDF5 file, each finite with a train/test split, drawn in epochs, optionally flipped, labelled.
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("image_data")
