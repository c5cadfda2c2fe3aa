from botfleet_gateway.main import main

main()
