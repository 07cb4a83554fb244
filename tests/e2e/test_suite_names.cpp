// CTest registers each TEST_CASE by name through CMake lists, where '[', ']' and ';' change how
// the list is split: such a name silently merges test cases into one CTest entry that runs none
// of them. Keep the names plain.
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

#include <unistd.h>

TEST_CASE("test case names are safe for CTest discovery", "[e2e][suite]") {
  char self[4096] = {0};
  REQUIRE(readlink("/proc/self/exe", self, sizeof self - 1) > 0);
  FILE* p = popen((std::string("'") + self + "' --list-test-names-only").c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  int names = 0;
  while (std::fgets(buf, sizeof buf, p)) {
    std::string name(buf);
    if (name.find_first_not_of(" \n") == std::string::npos) continue;
    ++names;
    CAPTURE(name);
    CHECK(name.find_first_of("[];") == std::string::npos);
  }
  pclose(p);
  REQUIRE(names > 50);
}
