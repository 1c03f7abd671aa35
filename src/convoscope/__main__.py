from convoscope.cli import main

main()
