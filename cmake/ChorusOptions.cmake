# Compiler flags shared by every Chorus target, as an interface library so that third-party
# code (generated flatbuffers headers, Catch2) is not held to our warning level.
option(CHORUS_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)

add_library(chorus_warnings INTERFACE)
target_compile_options(chorus_warnings INTERFACE -Wall -Wextra -Werror)

if(CHORUS_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
endif()
