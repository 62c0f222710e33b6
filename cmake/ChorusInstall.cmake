# What `cmake --install` lays out, and the Debian package CPack makes of it (README.md,
# "Install"):
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

# ---- the Debian package: `cpack -G DEB` in the build directory (README.md, "Install").
#
# Built from the default static binary, the package depends on no shared library; its chorus
# still resolves seed names through the NSS modules of the glibc it was built with (see
# CHORUS_STATIC), so build a package for other Debian releases with -DCHORUS_STATIC=OFF, where
# dpkg-shlibdeps names the libraries' packages (libuv1, libssl3, libsqlite3-0, ...).
set(CPACK_PACKAGE_NAME chorus)
set(CPACK_PACKAGE_VENDOR "The Chorus authors")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "leaderless cluster daemon: SWIM membership and task routing")
# The description's first line is the summary; this follows it (lines of dpkg's 80 columns).
string(CONCAT CPACK_PACKAGE_DESCRIPTION
  "Chorus runs the same agent on every node: members find each other from a seed\n"
  "list, agree on who is alive through SWIM gossip with Lifeguard's refinements\n"
  "and a phi-accrual failure detector, and route each task to the least-loaded\n"
  "healthy owner of its key on a consistent-hash ring.\n"
  "This package holds the chorus binary (the agent and its CLI), the chorus-sim\n"
  "simulator, and a systemd service that runs the agent as the system user chorus.")
if(NOT CPACK_DEBIAN_PACKAGE_MAINTAINER)
  set(CPACK_DEBIAN_PACKAGE_MAINTAINER "The Chorus authors")
endif()
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# Staged through DESTDIR, the install sees CMAKE_INSTALL_PREFIX=/usr (CPACK_INSTALL_PREFIX)
# rather than a path under CPack's staging folder: the install-time code above reads it.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# adduser: the postinst makes the user chorus. (deb-systemd-helper comes with
# init-system-helpers, which is essential.)
set(CPACK_DEBIAN_PACKAGE_DEPENDS adduser)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/cmake/deb/conffiles
    ${PROJECT_SOURCE_DIR}/cmake/deb/postinst
    ${PROJECT_SOURCE_DIR}/cmake/deb/prerm
    ${PROJECT_SOURCE_DIR}/cmake/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
