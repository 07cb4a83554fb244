// grid: write a results file's images as a PNG grid.
//
//   grid RUN.h5 [--sampler NAME | --reference] [--trajectory] [--out FILE.png] [--n 64]
//        [--columns K] [--scale S] [--shape C,H,W] [--range LO,HI] [--frames F]
//
// Reads /samples/<NAME>/x (the first sampler by default) or /data/reference, the first n
// images, and tiles them row by row (a square grid by default). With --trajectory it reads
// /samples/<NAME>/trajectory (K, N, ...) instead: one row per frame (F frames evenly spaced
// from the starting draw to the samples, default all K), one column per sample (the first
// --columns, default 8): the denoising of each sample reads top to bottom.
// Values are drawn from LO (black) to HI (white), [-1, 1] by default, the image data sets'
// range; outside it they are clipped. Samples of points (N, D) are images when --shape says
// how (a flattened digits run: --shape 1,8,8); (N, H, W) is one channel.
// Prints the path written. Exit status 0, or 1 with "grid: error: ..." on stderr.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include <diffusion/io/file_seal.hpp>
#include <diffusion/io/h5_memory_file.hpp>
#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/tensor/rows.hpp>

#include "png_grid.hpp"

namespace po = boost::program_options;
using namespace diffusion;

namespace {

std::vector<double> parse_numbers(const std::string& text, const std::string& option) {
  std::vector<double> out;
  std::stringstream s(text);
  std::string item;
  while (std::getline(s, item, ',')) {
    try {
      std::size_t used = 0;
      out.push_back(std::stod(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw Error("--" + option + " " + text + ": expected comma-separated numbers");
    }
  }
  return out;
}

/// x (N, ...) as images (N, C, H, W): kept if 4-D, (N, H, W) as one channel, anything else
/// reshaped to `shape` (C, H, W) when given.
Tensor as_images(const Tensor& x, const std::vector<double>& shape, const std::string& where) {
  const std::size_t n = x.shape()[0];
  Shape target;
  if (!shape.empty()) {
    if (shape.size() != 3) throw Error("--shape: expected C,H,W");
    target = {n, std::size_t(shape[0]), std::size_t(shape[1]), std::size_t(shape[2])};
    if (numel(target) != x.size())
      throw Error(where + " has shape " + shape_str(x) + ", which --shape " + shape_str(Shape(target.begin() + 1, target.end())) +
                  " does not divide into images");
  } else if (x.dimension() == 4) {
    return x;
  } else if (x.dimension() == 3) {
    target = {n, 1, x.shape()[1], x.shape()[2]};
  } else {
    throw Error(where + " has shape " + shape_str(x) + ", not images (N, C, H, W); give --shape C,H,W");
  }
  Tensor out = Tensor::from_shape(target);
  std::copy(x.data(), x.data() + x.size(), out.data());
  return out;
}

int run(int argc, char** argv) {
  po::options_description opts("Options");
  opts.add_options()
      ("help,h", "show this help")
      ("sampler", po::value<std::string>(), "the sampler under /samples (default: the first)")
      ("reference", "the reference images (/data/reference) instead of samples")
      ("trajectory", "the sampler's trajectory: one row per frame, one column per sample")
      ("out,o", po::value<std::string>(), "the PNG to write (default: RUN_<sampler>[_trajectory].png)")
      ("n", po::value<std::size_t>()->default_value(64), "images (without --trajectory)")
      ("columns", po::value<std::size_t>(), "images per row (default: a square grid; 8 with --trajectory)")
      ("frames", po::value<std::size_t>(), "with --trajectory: frames shown, evenly spaced (default: all)")
      ("scale", po::value<std::size_t>()->default_value(1), "pixels per image pixel")
      ("shape", po::value<std::string>(), "C,H,W of samples stored flattened")
      ("range", po::value<std::string>()->default_value("-1,1"), "LO,HI: the values drawn black and white");
  po::options_description hidden;
  hidden.add_options()("results", po::value<std::string>(), "");
  po::options_description all;
  all.add(opts).add(hidden);
  po::positional_options_description pos;
  pos.add("results", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
  po::notify(vm);
  if (vm.count("help") || !vm.count("results")) {
    std::cout << "usage: grid RUN.h5 [options]\n" << opts;
    return vm.count("help") ? 0 : 1;
  }
  const std::string path = vm["results"].as<std::string>();
  const bool reference = vm.count("reference") > 0, trajectory = vm.count("trajectory") > 0;
  if (reference && (trajectory || vm.count("sampler"))) throw Error("--reference cannot be combined with --sampler or --trajectory");
  const std::vector<double> range = parse_numbers(vm["range"].as<std::string>(), "range");
  if (range.size() != 2 || !(range[1] > range[0])) throw Error("--range: expected LO,HI with HI > LO");
  const std::vector<double> shape = vm.count("shape") ? parse_numbers(vm["shape"].as<std::string>(), "shape") : std::vector<double>{};

  if (!std::filesystem::exists(path)) throw Error(path + ": no such file");
  const H5::H5File file = h5_open_verified(path).file;
  const H5::Group root = file.openGroup("/");
  std::string name, what;
  if (reference) {
    what = "data/reference";
    if (!h5_exists(root, what)) throw Error(path + ": no /data/reference (the run drew no reference)");
    name = "reference";
  } else {
    if (!h5_exists(root, "samples")) throw Error(path + ": no /samples (did the run finish? status: " +
                                                 (has_attribute(root, "status") ? read_string_attribute(root, "status") : "?") + ")");
    const H5::Group samples = h5_open_group(root, "samples");
    if (vm.count("sampler")) {
      name = vm["sampler"].as<std::string>();
      if (!h5_exists(samples, name)) {
        std::string held;
        for (hsize_t i = 0; i < samples.getNumObjs(); ++i) held += (held.empty() ? "" : ", ") + samples.getObjnameByIdx(i);
        throw Error(path + ": no sampler '" + name + "' under /samples (it has: " + held + ")");
      }
    } else {
      if (samples.getNumObjs() == 0) throw Error(path + ": /samples is empty");
      name = samples.getObjnameByIdx(0);
    }
    what = "samples/" + name + "/" + (trajectory ? "trajectory" : "x");
    if (!h5_exists(root, what))
      throw Error(path + ": no /" + what + (trajectory ? " (give the sampler trajectory: K to keep one)" : ""));
  }
  const Tensor x = read_tensor(root, what);
  const std::string where = path + ":/" + what;
  grid::GridLayout layout;
  layout.scale = vm["scale"].as<std::size_t>();
  layout.lo = range[0], layout.hi = range[1];
  Tensor images;
  if (!trajectory) {
    if (x.dimension() < 2) throw Error(where + " has shape " + shape_str(x) + ", not a batch of images");
    images = as_images(first_rows(x, vm["n"].as<std::size_t>()), shape, where);
    if (vm.count("columns")) layout.columns = vm["columns"].as<std::size_t>();
  } else {
    // (K, N, ...): frames as rows, the first `columns` samples as columns.
    if (x.dimension() < 3) throw Error(where + " has shape " + shape_str(x) + ", not frames of a batch (K, N, ...)");
    const std::size_t k = x.shape()[0], n = x.shape()[1], per = x.size() / (k * n);
    const std::size_t cols = std::min(vm.count("columns") ? vm["columns"].as<std::size_t>() : std::size_t(8), n);
    const std::size_t frames = std::min(vm.count("frames") ? vm["frames"].as<std::size_t>() : k, k);
    if (cols == 0 || frames == 0) throw Error("--columns and --frames must be positive");
    Shape s(x.shape().begin() + 1, x.shape().end());
    s[0] = frames * cols;
    Tensor rows = Tensor::from_shape(s);
    for (std::size_t f = 0; f < frames; ++f) {
      // evenly spaced, the first (the starting draw) and the last (the samples) always shown
      const std::size_t frame = frames == 1 ? k - 1 : (f * (k - 1) + (frames - 1) / 2) / (frames - 1);
      std::copy(x.data() + frame * n * per, x.data() + (frame * n + cols) * per, rows.data() + f * cols * per);
    }
    images = as_images(rows, shape, where);
    layout.columns = cols;
  }
  std::string out;
  if (vm.count("out")) {
    out = vm["out"].as<std::string>();
  } else {
    const std::filesystem::path p(path);
    out = (p.parent_path() / (p.stem().string() + "_" + name + (trajectory ? "_trajectory" : "") + ".png")).string();
  }
  grid::write_png(out, grid::tile_images(images, layout));
  std::cout << out << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  H5::Exception::dontPrint();
  try {
    return run(argc, argv);
  } catch (const po::error& e) {
    std::cerr << "grid: error: " << e.what() << " (see grid --help)\n";
  } catch (const H5::Exception& e) {
    std::cerr << "grid: error: " << e.getDetailMsg() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "grid: error: " << e.what() << "\n";
  }
  return 1;
}
