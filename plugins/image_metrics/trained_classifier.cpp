#include "trained_classifier.hpp"

#include <algorithm>
#include <filesystem>
#include <optional>

#include <diffusion/io/file_seal.hpp>
#include <diffusion/io/h5_memory_file.hpp>
#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/plugin/registries.hpp>

namespace diffusion::image_metrics {

TrainedClassifier::TrainedClassifier(const ConfigNode& c) {
  if (!c.has("classifier"))
    c.error("needs `classifier:`, the results file of a trained image_classifier (e.g. results/digits_classifier.h5 "
            "from experiments/digits_classifier.yaml)");
  const ConfigNode where = c.at("classifier");
  path_ = c.get_string("classifier");
  const std::optional<std::string> from = c.has("from") ? std::optional<std::string>(c.get_choice("from", {"ema", "model"}))
                                                        : std::nullopt;
  const std::string file_msg = "classifier file " + path_;
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec))
    where.error(file_msg + " does not exist (run the experiment that trains it first, e.g. experiments/digits_classifier.yaml)");
  if (std::filesystem::is_directory(path_, ec)) where.error(file_msg + " is a folder, not a results file");
  H5::Exception::dontPrint();
  try {
    if (!H5::H5File::isHdf5(path_)) where.error(file_msg + " is not an HDF5 results file");
    const H5::H5File file = h5_open_verified(path_).file;
    const H5::Group root = file.openGroup("/");
    const std::string status = has_attribute(root, "status") ? read_string_attribute(root, "status") : "";
    if (status != "complete" || !has_attribute(root, "config") || !h5_exists(root, "model"))
      where.error(file_msg + " is not a complete results file with a trained model (" +
                  (status.empty() ? std::string("no status") : "status=" + status) +
                  (has_attribute(root, "config") ? "" : ", no config") + (h5_exists(root, "model") ? "" : ", no /model") + ")");
    const Config stored = Config::load_string(read_string_attribute(root, "config"), path_ + ":/config");
    if (!stored.root().has("network")) where.error(file_msg + ": its stored config has no network");
    const ConfigNode net_node = stored.root().at("network");
    if (net_node.type() != "image_classifier")
      where.error(file_msg + " holds a " + net_node.type() +
                  " network, not an image_classifier (train one with loss cross_entropy: experiments/digits_classifier.yaml)");
    if (!h5_exists(root, "data")) where.error(file_msg + " has no /data (its codec)");
    const H5::Group data = h5_open_group(root, "data");
    const std::string codec = has_attribute(data, "codec") ? read_string_attribute(data, "codec") : "";
    if (codec != "identity")
      where.error(file_msg + ": the classifier was trained through the codec '" + codec +
                  "'; the metrics read samples in the data's own coordinates, so train it with codec: identity");
    const std::string group = from ? *from : (h5_exists(root, "ema") ? "ema" : "model");
    if (!h5_exists(root, group)) c.at("from").error(file_msg + " has no /" + group);
    const H5::Group weights = h5_open_group(root, group);
    if (const std::string bad = h5_first_nonfinite(weights); !bad.empty())
      where.error(file_msg + ": " + bad + " holds NaN or infinite values (did its run diverge?)");

    // The shape of one image the classifier was built for: the rows of /data/reference, or (a
    // run without samplers writes none) the stored data set's own sample shape.
    Rng init(0);  // the weights are overwritten by the file's
    BuildContext build;
    build.rng = &init;
    if (h5_exists(data, "reference")) {
      const Shape reference = read_shape(data, "reference");
      build.data_shape = Shape(reference.begin() + 1, reference.end());
    } else {
      if (!stored.root().has("dataset")) where.error(file_msg + ": its stored config has no dataset");
      build.data_shape = registries().datasets.create(stored.root().at("dataset"), build)->sample_shape();
    }
    build.num_classes = static_cast<int>(read_shape(weights, "head.bias").at(0));
    network_ = registries().networks.create(net_node, build);
    classifier_ = dynamic_cast<ImageClassifier*>(network_.get());
    if (!classifier_) where.error(file_msg + ": its network did not build as an image_classifier");
    network_->load(weights);
    network_->eval();
    network_->freeze();
  } catch (const ConfigError&) {
    throw;
  } catch (const CorruptFile& e) {
    where.error("classifier file " + std::string(e.what()) + "; use an intact copy, or run its experiment again");
  } catch (const H5::Exception& e) {
    where.error(file_msg + ": unreadable (" + e.getDetailMsg() + ")");
  } catch (const Error& e) {
    where.error(file_msg + ": " + e.what());
  }
}

std::size_t TrainedClassifier::input_size() const { return numel(classifier_->image_shape()); }

Tensor TrainedClassifier::as_images(const Tensor& samples) const {
  const std::size_t n = samples.dimension() ? samples.shape()[0] : 0;
  if (n == 0 || samples.size() != n * input_size())
    throw Error("image metrics: samples " + shape_str(samples) + " do not hold images of the classifier's shape " +
                shape_str(classifier_->image_shape()) + " (" + path_ + ")");
  Shape s{n};
  for (const std::size_t k : classifier_->image_shape()) s.push_back(k);
  Tensor x = Tensor::from_shape(s);
  std::copy(samples.data(), samples.data() + samples.size(), x.data());
  return x;
}

Tensor TrainedClassifier::features(const Tensor& samples) const { return classifier_->features(as_images(samples)); }

std::vector<int> TrainedClassifier::predict(const Tensor& samples) const {
  const Tensor logits = classifier_->logits(as_images(samples));
  const std::size_t n = logits.shape()[0], k = logits.shape()[1];
  std::vector<int> out(n);
  for (std::size_t i = 0; i < n; ++i)
    out[i] = static_cast<int>(std::max_element(logits.data() + i * k, logits.data() + (i + 1) * k) - (logits.data() + i * k));
  return out;
}

}  // namespace diffusion::image_metrics
