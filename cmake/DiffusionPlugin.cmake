# diffusion_add_plugin(NAME src...): one plugin = one shared library linking diffusion::core.
# Used both in the source tree and by out-of-tree plugins after find_package(diffusion CONFIG).
function(diffusion_add_plugin name)
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE diffusion::core)
  set_target_properties(${name} PROPERTIES PREFIX "lib" CXX_VISIBILITY_PRESET hidden)
  if(DEFINED DIFFUSION_PLUGIN_BUILD_DIR)
    # In-tree: next to runexp's default plugin folder, and installed with the toolkit.
    # Installed into <libdir>/diffusion/plugins: find libdiffusion_core two folders up even when
    # loaded by a program other than runexp.
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${DIFFUSION_PLUGIN_BUILD_DIR}
                                             INSTALL_RPATH "$ORIGIN/../..")
    install(TARGETS ${name} LIBRARY DESTINATION ${DIFFUSION_PLUGIN_INSTALL_DIR})
  endif()
endfunction()
