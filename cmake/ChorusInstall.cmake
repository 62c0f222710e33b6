# What `cmake --install` lays out:
#
#   bin/chorus, bin/chorus-sim
#   lib/systemd/system/chorus.service     examples/systemd's unit, its paths made this install's
#   <sysconfdir>/chorus/chorus.json        examples/systemd's config (/etc for the /usr prefix)
#   share/man/man1/chorus.1.gz             from `chorus --help` by help2man, where it is found
#   share/doc/chorus/                      README.md, LICENSE and examples/ (handler included)
#
# The unit and the config's folder are settled at install time, not at configure time: the
# prefix an install really uses (`cmake --install --prefix`, or CPack's /usr) may not be the
# CMAKE_INSTALL_PREFIX the tree was configured with, and the unit's ExecStart must name the
# binary where this install put it.
include(GNUInstallDirs)

install(TARGETS chorus RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# OPTIONAL: a sanitizer build leaves the simulator out of `all` (CMakeLists.txt).
install(TARGETS chorus-sim RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} OPTIONAL)

# systemd reads units from <prefix>/lib/systemd/system for the prefixes /usr and /usr/local
# alike; GNUInstallDirs' LIBDIR would be lib/x86_64-linux-gnu on Debian, which it does not read.
set(CHORUS_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "Where the unit goes, under the install prefix unless absolute")
install(CODE "
  set(CHORUS_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
  set(CHORUS_STAGING_DIR \"${PROJECT_BINARY_DIR}/install-staging\")
  set(CHORUS_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(CHORUS_SYSCONFDIR \"${CMAKE_INSTALL_SYSCONFDIR}\")
  set(CHORUS_SYSTEMD_UNIT_DIR \"${CHORUS_SYSTEMD_UNIT_DIR}\")
  include(\"${PROJECT_SOURCE_DIR}/cmake/InstallServiceFiles.cmake\")")

# chorus(1), generated from `chorus --help` so it never lists a flag or command the binary lacks
# (a hand-kept page drifts). help2man is optional: a build without it installs no page.
find_program(HELP2MAN help2man)
find_program(GZIP gzip)
if(HELP2MAN AND GZIP)
  set(CHORUS_MAN_PAGE ${PROJECT_BINARY_DIR}/man/chorus.1)
  add_custom_command(OUTPUT ${CHORUS_MAN_PAGE}.gz
    COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
    COMMAND ${HELP2MAN} --no-info --no-discard-stderr --section 1
            --name "a leaderless cluster daemon"
            --include ${PROJECT_SOURCE_DIR}/cmake/chorus.h2m
            --output ${CHORUS_MAN_PAGE} $<TARGET_FILE:chorus>
    # -n: no name or time stamp in the archive, so the same page compresses to the same bytes.
    COMMAND ${GZIP} -9nf ${CHORUS_MAN_PAGE}
    DEPENDS chorus ${PROJECT_SOURCE_DIR}/cmake/chorus.h2m
    COMMENT "help2man: chorus(1)")
  add_custom_target(chorus-man ALL DEPENDS ${CHORUS_MAN_PAGE}.gz)
  install(FILES ${CHORUS_MAN_PAGE}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(STATUS "help2man not found: no chorus(1) man page (apt-get install help2man)")
endif()

install(FILES README.md LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY examples/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples USE_SOURCE_PERMISSIONS)
