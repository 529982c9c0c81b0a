import Glibc
import Server

exit(Commands.main(arguments: CommandLine.arguments, environment: ProcessSupport.environment()))
