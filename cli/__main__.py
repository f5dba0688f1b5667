from effnet.cli.app import main

main()
