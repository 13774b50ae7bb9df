import requests
import time

API_KEY = "your_api_key"
BASE_URL = "https://api.serika.dev/api/openai/v1"

headers = {
    "Authorization": f"Bearer {API_KEY}",
    "Content-Type": "application/json"
}

data = {
    "model": "tensorart-illustrious-xl-v2-aesthetic",
    "prompt": "A futuristic city with neon lights, cyberpunk style",
    "width": 1024,
    "height": 1024
}

# 1. Submit Job
response = requests.post(f"{BASE_URL}/jobs/images", headers=headers, json=data)
job_data = response.json()
job_id = job_data['id']
print(f"Job submitted. ID: {job_id}")

# 2. Poll for Status
while True:
    status_response = requests.get(f"{BASE_URL}/jobs/{job_id}", headers=headers)
    status_data = status_response.json()
    status = status_data['status']
    
    print(f"Status: {status}")
    
    if status == 'COMPLETED':
        print("Job finished!")
        print("Result URL:", status_data['result']['url'])
        break
    elif status == 'FAILED':
        print("Job failed:", status_data.get('error'))
        break
        
    time.sleep(2) # Wait 2 seconds before checking again
