# The lesson's TCP server, as written in the lesson. The only changes: the
# port may be given as the first argument (default 10000; 0 picks a free
# one), and the bound port is printed on stderr so a test can find it.
import socket
import sys

port = int(sys.argv[1]) if len(sys.argv) > 1 else 10000

server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server_socket.bind(('localhost', port))
server_socket.listen(1)
print(server_socket.getsockname()[1], file=sys.stderr, flush=True)
client_socket, address = server_socket.accept()
client_socket.send("Hello, World!".encode())
data = client_socket.recv(1024)
print(data.decode())
client_socket.close()
server_socket.close()
