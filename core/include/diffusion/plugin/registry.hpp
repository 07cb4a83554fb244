#pragma once
// Run-time selection tables: one Registry per kind of component, filled by name, queried by
// the `type:` key of a config node.
//
//   Registry<Sampler, const BuildContext&> samplers("sampler");
//   samplers.add("ddim", [](const ConfigNode& c, const BuildContext& ctx) {
//     return std::make_shared<DdimSampler>(c.get_int("steps", 50, 1));
//   });
//   std::shared_ptr<Sampler> s = samplers.create(cfg.root().at("sampler"), ctx);
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "diffusion/io/config.hpp"
#include "diffusion/tensor/tensor.hpp"
#include "diffusion/io/text.hpp"

namespace diffusion {

/// "loaded plugins: libdiffusion_ddpm.so, ..." (file names), or "no plugin is loaded", for
/// errors about a name no registry knows (plugin_loader.cpp).
std::string loaded_plugins_text();

/// A table of factories for one kind of component ("sampler", "dataset", ...), keyed by the
/// YAML type name. Entries from a plugin carry the plugin's library handle (`owner`), and
/// every object created from such an entry keeps that library loaded until it is destroyed.
/// Thread-safe; factories run without the lock held, so they may create sub-components.
template <class Base, class... Args>
class Registry {
 public:
  /// Builds a component from its config node (plus the kind's extra arguments).
  using Factory = std::function<std::shared_ptr<Base>(const ConfigNode&, Args...)>;

  /// `kind` names the component kind in messages ("sampler").
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  /// Register `name`. `origin` says who registered it (a plugin's file, or "core");
  /// `owner` is kept alive as long as the entry or anything it created lives. A duplicate
  /// name throws Error: "sampler 'ddim' from libfoo.so is already registered by libddpm.so".
  void add(const std::string& name, Factory factory, std::string origin = "core",
           std::shared_ptr<const void> owner = {}) {
    if (name.empty()) throw Error(kind_ + " with an empty name from " + origin);
    if (!factory) throw Error(kind_ + " '" + name + "' from " + origin + " has no factory");
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = entries_.find(name);
    if (it != entries_.end())
      throw Error(kind_ + " '" + name + "' from " + origin + " is already registered by " +
                  it->second.origin);
    entries_.emplace(name, Entry{std::move(owner), std::move(factory), std::move(origin)});
  }

  /// Create the component named by node.type() (`type: ddim`, or the `sampler: ddim`
  /// shorthand), then reject keys of `node` that the factory never read. An unknown name
  /// raises ConfigError at the `type` value, listing the sorted known names and the nearest.
  std::shared_ptr<Base> create(const ConfigNode& node, Args... args) const {
    const std::string name = node.type();
    Entry entry = find_entry(node, name);
    std::shared_ptr<Base> made = entry.factory(node, std::forward<Args>(args)...);
    if (!made)
      throw Error(kind_ + " '" + name + "' from " + entry.origin + ": the factory returned null");
    node.check_no_unknown_keys();
    if (!entry.owner) return made;
    Base* raw = made.get();
    return std::shared_ptr<Base>(raw, KeepOwnerAlive{std::move(made), std::move(entry.owner)});
  }

  /// Whether `name` is registered.
  bool contains(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.count(name) > 0;
  }

  /// All registered names, sorted.
  std::vector<std::string> names() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    out.reserve(entries_.size());
    for (const auto& e : entries_) out.push_back(e.first);
    return out;
  }

  /// Who registered `name` ("core" or a plugin file); throws Error if it is not registered.
  std::string origin(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = entries_.find(name);
    if (it == entries_.end()) throw Error("no " + kind_ + " '" + name + "' is registered");
    return it->second.origin;
  }

  /// The component kind, as given to the constructor.
  const std::string& kind() const { return kind_; }

  /// Drop every entry registered by `origin` (a plugin whose registration failed halfway).
  /// Objects already created keep their library alive through their own deleter.
  void remove_origin(const std::string& origin) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (it->second.origin == origin)
        it = entries_.erase(it);
      else
        ++it;
    }
  }

 private:
  struct Entry {
    // Declared first so it is destroyed last: the factory's code lives in the owner's library.
    std::shared_ptr<const void> owner;
    Factory factory;
    std::string origin;
  };

  // Deleter of objects built by a plugin: destroy the object (its destructor is plugin code)
  // while the library is still loaded, then let go of the library.
  struct KeepOwnerAlive {
    std::shared_ptr<Base> object;
    std::shared_ptr<const void> owner;
    void operator()(Base*) noexcept {
      object.reset();
      owner.reset();
    }
  };

  // Copies the entry (factory and owner) so the factory can run without the lock.
  Entry find_entry(const ConfigNode& node, const std::string& name) const {
    std::vector<std::string> known;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = entries_.find(name);
      if (it != entries_.end()) return it->second;
      for (const auto& e : entries_) known.push_back(e.first);
    }
    std::string msg = "unknown " + kind_ + " '" + name + "'";
    if (known.empty()) msg += "; no " + kind_ + " is registered";
    else msg += " (known: " + join(known, ", ") + ")";
    // A near name is most likely a typo; otherwise the plugin that provides it may not be loaded.
    if (const auto near = known.empty() ? std::nullopt : nearest(name, known))
      msg += "; did you mean '" + *near + "'?";
    else
      msg += "; if a plugin provides it, load it (runexp --plugins FILE_OR_FOLDER); " + loaded_plugins_text();
    // Point at the name itself: the `type` value, or the scalar of the shorthand form.
    const ConfigNode where = node.is_scalar() ? node : node.at("type");
    where.error(msg);
  }

  std::string kind_;
  mutable std::mutex mutex_;
  std::map<std::string, Entry> entries_;
};

}  // namespace diffusion
