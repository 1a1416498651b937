from plenopack.cli import main

main()
