# Fails if the protocol core reaches outside itself (DESIGN §1): no I/O, sockets, clocks,
# threads, randomness from the OS, or the wire/JSON libraries. Run by CTest as
# `core_is_sans_io`; the chorus_core target links fmt alone, and this keeps its sources honest
# about system headers, which no include path can hide.
file(GLOB_RECURSE sources "${CORE_DIR}/*.hpp" "${CORE_DIR}/*.cpp")
set(forbidden
  "#include[ ]*[<\"](uv\\.h|flatbuffers/|nlohmann/|sys/socket\\.h|netinet/|arpa/|unistd\\.h|thread|mutex|fstream|iostream|random)"
  "steady_clock::now|system_clock::now|high_resolution_clock::now|random_device|std::rand|getenv"
  "#include[ ]*\"(wire|sim|net|daemon|http|cli)/")
set(failures "")
foreach(f ${sources})
  file(STRINGS "${f}" lines)
  set(n 0)
  foreach(line IN LISTS lines)
    math(EXPR n "${n} + 1")
    foreach(pattern ${forbidden})
      if(line MATCHES "${pattern}")
        string(APPEND failures "${f}:${n}: ${line}\n")
      endif()
    endforeach()
  endforeach()
endforeach()
if(failures)
  message(FATAL_ERROR "src/core must stay sans-IO; these lines reach outside it:\n${failures}")
endif()
list(LENGTH sources count)
message(STATUS "src/core is sans-IO (${count} files checked)")
