from channel_bridge.cli import main

if __name__ == "__main__":
    main()
