from botfleet_actions.server import main

main()
