import Server
Server.main()
