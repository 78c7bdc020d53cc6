from hieramas.cli import main

main()
